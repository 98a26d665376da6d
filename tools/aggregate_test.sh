#!/bin/sh
# End-to-end test of `tally aggregate` on batch R-1 of
# docs/algorithms.md#worked-batches-of-the-robust-rules (plus a
# weighted average, CAF and Flag's random init on hand-computed cases).
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

# Writes the .npy $1 of dtype $2 (f4 or f8) and shape $3 (e.g. "5, 2" or
# "5,") holding the values $4... in C order.
npy() {
  "$PYTHON" - "$@" <<'PY'
import struct, sys
path, dtype, shape, values = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
header = "{'descr': '<%s', 'fortran_order': False, 'shape': (%s), }" % (dtype, shape)
header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
data = struct.pack("<%d%s" % (len(values), "f" if dtype == "f4" else "d"),
                   *map(float, values))
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data)
PY
}

# R-1: five clients in 2-D, the last one Byzantine.
npy "$DIR/r1.npy" f4 "5, 2" 1 1 1.2 0.8 0.8 1.1 1.1 1.3 10 -10

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

# Weighted average, float64 weights (1, 2, 1, 0, 0), by hand:
# (1·(1,1) + 2·(1.2,0.8) + 1·(0.8,1.1)) / 4 = (1.05, 0.925).
npy "$DIR/w.npy" f8 "5," 1 2 1 0 0
"$TALLY" aggregate --rule=average --weights="$DIR/w.npy" --in="$DIR/r1.npy" \
  --out="$DIR/wavg.npy" || fail "weighted average exited $?"
check "$DIR/wavg.npy" 1.05 0.925 || fail "weighted average output"

# CAF on byzfl's docstring example: (4, 5, 6) whatever the start vector.
npy "$DIR/doc.npy" f4 "3, 3" 1 2 3 4 5 6 7 8 9
"$TALLY" aggregate --rule=caf --f=1 --seed=7 --in="$DIR/doc.npy" --out="$DIR/caf.npy" \
  || fail "caf --f=1 exited $?"
check "$DIR/caf.npy" 4 5 6 || fail "caf --f=1 output"

# Flag, random init, d = r = 2: Y0 spans the plane, so the output with the
# reference scale is the sum of the normalised rows / r: ((0.6,0.8) + (1,0)
# + (0,1)) / 2 = (0.8, 0.9); with the default scale it is the mean of the
# normalised rows times the median norm 2: (1.0667, 1.2).
npy "$DIR/plane.npy" f4 "3, 2" 3 4 1 0 0 2
"$TALLY" aggregate --rule=flag --flag_r=2 --flag_init=random --flag_scale=reference --seed=3 \
  --in="$DIR/plane.npy" --out="$DIR/flag.npy" || fail "flag --flag_init=random exited $?"
check "$DIR/flag.npy" 0.8 0.9 || fail "flag --flag_init=random output"
"$TALLY" aggregate --rule=flag --flag_r=2 --flag_init=random --seed=3 --in="$DIR/plane.npy" \
  --out="$DIR/flag2.npy" || fail "flag median_norm exited $?"
check "$DIR/flag2.npy" 1.066667 1.2 || fail "flag median_norm output"

# Weights for an unweighted rule are a usage error (2); the wrong number of
# weights an input error (1).
status=0
"$TALLY" aggregate --rule=krum --f=1 --weights="$DIR/w.npy" --in="$DIR/r1.npy" \
  --out="$DIR/x.npy" 2>/dev/null || status=$?
[ "$status" -eq 2 ] || fail "krum --weights exited $status, want 2"
npy "$DIR/w4.npy" f4 "4," 1 1 1 1
status=0
"$TALLY" aggregate --rule=average --weights="$DIR/w4.npy" --in="$DIR/r1.npy" \
  --out="$DIR/x.npy" 2>"$DIR/stderr" || status=$?
[ "$status" -eq 1 ] || fail "4 weights for 5 rows exited $status, want 1"
grep -q "w4.npy" "$DIR/stderr" || fail "bad weights message does not name the file"

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
