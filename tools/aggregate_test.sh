#!/bin/sh
# End-to-end test of `tally aggregate` on ALGORITHMS.md §2.5 R-1.
# Usage: aggregate_test.sh TALLY_BINARY PYTHON3 SCRATCH_DIR
# The .npy files are built and read with python3's struct module (numpy is
# not required).
set -eu
TALLY=$1
PYTHON=$2
DIR=$3
rm -rf "$DIR"
mkdir -p "$DIR"

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# R-1: five clients in 2-D, the last one Byzantine.
"$PYTHON" - "$DIR/r1.npy" <<'PY'
import struct, sys
rows = [(1, 1), (1.2, 0.8), (0.8, 1.1), (1.1, 1.3), (10, -10)]
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (5, 2), }"
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
data = b"".join(struct.pack("<2f", *r) for r in rows)
with open(sys.argv[1], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data)
PY

# Checks that the .npy $1 is 1-D and equal to the floats $2... within 1e-5.
check() {
  "$PYTHON" - "$@" <<'PY'
import ast, struct, sys
path, want = sys.argv[1], [float(x) for x in sys.argv[2:]]
raw = open(path, "rb").read()
assert raw[:8] == b"\x93NUMPY\x01\x00", raw[:8]
(hlen,) = struct.unpack("<H", raw[8:10])
header = ast.literal_eval(raw[10:10 + hlen].decode())
assert header["descr"] == "<f4" and not header["fortran_order"], header
assert header["shape"] == (len(want),), header
got = struct.unpack("<%df" % len(want), raw[10 + hlen:])
if any(abs(g - w) > 1e-5 for g, w in zip(got, want)):
    sys.exit("got %s, want %s" % (got, want))
PY
}

"$TALLY" aggregate --rule=krum --f=1 --in "$DIR/r1.npy" --out "$DIR/krum.npy" \
  || fail "krum --f=1 exited $?"
check "$DIR/krum.npy" 1 1 || fail "krum --f=1 output"

"$TALLY" aggregate --rule=trimmed_mean --f=1 --in="$DIR/r1.npy" --out="$DIR/tm.npy" \
  || fail "trimmed_mean --f=1 exited $?"
check "$DIR/tm.npy" 1.1 0.966667 || fail "trimmed_mean --f=1 output"

# n=5 is too small for f=3: the rule's own error, exit 1.
status=0
"$TALLY" aggregate --rule=krum --f=3 --in="$DIR/r1.npy" --out="$DIR/bad.npy" \
  2>"$DIR/stderr" || status=$?
cat "$DIR/stderr" >&2
[ "$status" -eq 1 ] || fail "krum --f=3 exited $status, want 1"
grep -q "f=3" "$DIR/stderr" || fail "krum --f=3 message does not mention f=3"

# Usage errors exit 2: unknown rule, missing --out.
status=0
"$TALLY" aggregate --rule=nope --in="$DIR/r1.npy" --out="$DIR/x.npy" 2>/dev/null || status=$?
[ "$status" -eq 2 ] || fail "unknown rule exited $status, want 2"
status=0
"$TALLY" aggregate --rule=krum --in="$DIR/r1.npy" 2>/dev/null || status=$?
[ "$status" -eq 2 ] || fail "missing --out exited $status, want 2"

# A missing input file is an error (1) naming the file.
status=0
"$TALLY" aggregate --rule=krum --f=1 --in="$DIR/none.npy" --out="$DIR/x.npy" \
  2>"$DIR/stderr" || status=$?
[ "$status" -eq 1 ] || fail "missing input exited $status, want 1"
grep -q "none.npy" "$DIR/stderr" || fail "missing input message does not name the file"

echo "PASS"
