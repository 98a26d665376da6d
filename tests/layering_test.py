#!/usr/bin/env python3
"""Layering and citation check over the source tree (ctest: layering).

Fails, naming file and line, on
  1. an #include that crosses a forbidden direction:
     - core/, compress/, aggregators/ and secagg/ are pure C++ on spans of floats and
       Abseil: they never include server/, client/ (nor the SDK's public
       tally/client.h), sim/, proto/ (whose headers pull in generated code),
       generated tally/v1/*.pb.h, grpcpp/, grpc/ or google/protobuf/;
     - secagg/ (secure aggregation's crypto and protocol core) follows the
       same rule: the server and the client SDK include it, never the reverse;
     - client/ never includes server/ or aggregators/;
     - server/ never includes client/ nor the SDK's tally/client.h, except the
       relay (server/relay.*, library tally_relay), a client of its upstream;
  2. a CMake link that crosses the same directions: the libraries
     tally_core, tally_compress and tally_aggregators never link (directly or
     through another of our targets) tally_proto, tally_wire, gRPC, protobuf,
     the server, client or sim libraries; tally_server_lib never links
     tally_client or tally_relay (only tally-server and the tests link the
     relay);
  3. a citation of a .md file that does not exist in the repository (in a
     comment, a docstring or a Markdown page), or of an anchor
     (`docs/algorithms.md#krum`, or `[below](#krum)` within a Markdown page)
     that no heading of that page produces.

Usage: layering_test.py [source_dir]   (default: the parent of tests/)
"""

import os
import re
import sys

SOURCE_EXTS = (".cc", ".h", ".proto", ".py", ".sh", ".cmake", ".txt", ".md",
               ".in", ".yml", ".yaml", ".toml", ".cfg")

# Rules: (directories the including file is under, forbidden include prefixes).
_PURE = ("server/", "client/", "tally/client.h", "sim/", "proto/", "tally/v1/",
         "grpcpp/", "grpc/", "grpc++/", "google/protobuf/")
_SDK = ("client/", "tally/client.h")
# Rules: (directories the including file is under, forbidden include
# prefixes, files under those directories the rule exempts).
LAYER_RULES = [
    (("core/", "compress/", "aggregators/", "secagg/"), _PURE, ()),
    (("client/",), ("server/", "aggregators/"), ()),
    (("server/",), _SDK, ("server/relay.h", "server/relay.cc")),
]

# Link rules: (our library, libraries or prefixes it may never reach).
_PURE_LINKS = ("tally_proto", "tally_wire", "tally_server_lib", "tally_relay",
               "tally_checkpoint", "tally_client", "tally_sim", "gRPC::",
               "protobuf::")
LINK_RULES = [
    ("tally_core", _PURE_LINKS),
    ("tally_compress", _PURE_LINKS),
    ("tally_aggregators", _PURE_LINKS),
    # The server's parts tested without gRPC (server/CMakeLists.txt).
    ("tally_server_parts", _PURE_LINKS),
    ("tally_secagg", _PURE_LINKS),
    ("tally_server_lib", ("tally_client", "tally_relay", "tally_sim")),
]

# .md names that appear in the tree as program output, not as citations.
NOT_CITATIONS = {
    "table.md",  # scripts/strategy_results.py --table: the file it writes.
}

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]')
SELF_ANCHOR_RE = re.compile(r'\]\(#([A-Za-z0-9_\-]+)\)')
MD_RE = re.compile(r'([A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md)(#[A-Za-z0-9_\-]+)?\b')


def source_files(root):
    for dirpath, dirnames, filenames in os.walk(root):
        # Skip hidden folders (.git) and any
        # build tree (recognised by its CMakeCache.txt).
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and d != "__pycache__" and
            not os.path.exists(os.path.join(dirpath, d, "CMakeCache.txt")))
        for name in sorted(filenames):
            if name.endswith(SOURCE_EXTS) or name == "Dockerfile" or \
               os.path.basename(dirpath) in ("scripts", ".ci"):
                yield os.path.join(dirpath, name)


def github_anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


_anchor_cache = {}


def anchors_of(md_path):
    if md_path not in _anchor_cache:
        anchors, seen, in_code = set(), {}, False
        with open(md_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lstrip().startswith("```"):
                    in_code = not in_code
                    continue
                m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
                if m and not in_code:
                    base = github_anchor(m.group(1))
                    n = seen.get(base, 0)
                    seen[base] = n + 1
                    anchors.add(base if n == 0 else "%s-%d" % (base, n))
        _anchor_cache[md_path] = anchors
    return _anchor_cache[md_path]


def resolve_md(root, file_dir, name):
    """The existing file `name` refers to (root- or file-relative), or None."""
    for base in (root, file_dir):
        path = os.path.normpath(os.path.join(base, name))
        if path.startswith(root) and os.path.isfile(path):
            return path
    return None


def check_file(root, path, errors):
    rel = os.path.relpath(path, root)
    rules = [forbidden for dirs, forbidden, exempt in LAYER_RULES
             if rel.startswith(dirs) and rel not in exempt]
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.readlines()
    for lineno, line in enumerate(lines, 1):
        m = INCLUDE_RE.match(line)
        if m and rel.endswith((".cc", ".h")):
            target = m.group(1)
            for forbidden in rules:
                if target.startswith(forbidden):
                    errors.append("%s:%d: forbidden include \"%s\" (layering: "
                                  "%s may not include %s)" %
                                  (rel, lineno, target, rel.split("/")[0] + "/",
                                   ", ".join(forbidden)))
        if rel.endswith(".md"):
            for m in SELF_ANCHOR_RE.finditer(line):
                if m.group(1) not in anchors_of(path):
                    errors.append("%s:%d: links to #%s, but the page has no "
                                  "such heading" % (rel, lineno, m.group(1)))
        for m in MD_RE.finditer(line):
            name, anchor = m.group(1), m.group(2)
            if name.startswith("http") or "//" in name or \
               os.path.basename(name) in NOT_CITATIONS:
                continue
            # Part of a URL (https://github.com/.../README.md) is not ours.
            if "://" in line[max(0, m.start() - 200):m.start()] and \
               re.search(r"https?://\S*$", line[:m.start()]):
                continue
            target = resolve_md(root, os.path.dirname(path), name)
            if target is None:
                errors.append("%s:%d: cites %s, which does not exist in the "
                              "repository" % (rel, lineno, name))
            elif anchor and anchor[1:] not in anchors_of(target):
                errors.append("%s:%d: cites %s%s, but %s has no such heading"
                              % (rel, lineno, name, anchor,
                                 os.path.relpath(target, root)))


LINK_RE = re.compile(r"target_link_libraries\(\s*([A-Za-z0-9_:.-]+)([^)]*)\)",
                     re.S)
LINK_KEYWORDS = {"PUBLIC", "PRIVATE", "INTERFACE", "LINK_PUBLIC",
                 "LINK_PRIVATE"}


def link_graph(root):
    """{target: set of what its target_link_libraries name} over the tree."""
    graph = {}
    for path in source_files(root):
        if not path.endswith(("CMakeLists.txt", ".cmake")):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            text = re.sub(r"#[^\n]*", "", f.read())
        for m in LINK_RE.finditer(text):
            deps = [d for d in m.group(2).split() if d not in LINK_KEYWORDS]
            graph.setdefault(m.group(1), set()).update(deps)
    return graph


def check_links(graph, errors):
    for target, forbidden in LINK_RULES:
        if target not in graph:
            errors.append("CMake: no target_link_libraries(%s ...) found "
                          "(layering_test.py's LINK_RULES are out of date)"
                          % target)
            continue
        # Walk what the target reaches through our own targets: the path
        # names the culprit.
        seen, stack = {target}, [(target, [target])]
        while stack:
            node, path = stack.pop()
            for dep in sorted(graph.get(node, ())):
                if dep in seen:
                    continue
                seen.add(dep)
                if dep.startswith(forbidden):
                    errors.append("CMake: %s links %s (through %s); layering: "
                                  "%s may not link %s" %
                                  (target, dep, " -> ".join(path + [dep]),
                                   target, ", ".join(forbidden)))
                stack.append((dep, path + [dep]))


def main(argv):
    root = os.path.realpath(argv[1] if len(argv) > 1 else
                            os.path.join(os.path.dirname(__file__), ".."))
    errors = []
    count = 0
    for path in source_files(root):
        count += 1
        check_file(root, path, errors)
    check_links(link_graph(root), errors)
    for e in errors:
        print(e)
    if errors:
        print("layering_test: %d problem(s) in %d files" % (len(errors), count))
        return 1
    print("layering_test: %d files OK" % count)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
