#!/usr/bin/env python3
"""Lists non-test functions in src/ longer than a limit (default 80 lines).

Usage: scripts/long_fns.py [LIMIT] [DIR]. Exits 1 if any is found. A function's length
counts from its `fn` line to its closing brace; `#[cfg(test)]` modules and tests.rs files
are skipped. Braces in strings and comments are ignored well enough for this codebase.
"""
import pathlib
import re
import sys

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def strip(line):
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return line.split("//", 1)[0]


def scan(path, limit):
    lines = path.read_text().splitlines()
    found, skip_depth, depth = [], None, 0
    stack = []  # (name, start line, depth at which it opened)
    pending_test = False
    for n, raw in enumerate(lines, 1):
        line = strip(raw)
        if "#[cfg(test)]" in raw:
            pending_test = True
        m = FN.match(line)
        if m and skip_depth is None:
            stack.append((m.group(6), n, depth))
        if pending_test and re.match(r"^\s*(pub\s+)?mod\s+\w+\s*\{", line) and skip_depth is None:
            skip_depth = depth
        if pending_test and line.strip() and not line.strip().startswith("#"):
            pending_test = False
        for ch in line:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if skip_depth is not None and depth == skip_depth:
                    skip_depth = None
                    stack = [s for s in stack if s[2] < depth]
                while stack and depth == stack[-1][2]:
                    name, start, _ = stack.pop()
                    if n - start + 1 > limit:
                        found.append((path, start, name, n - start + 1))
        if m and line.rstrip().endswith(";") and stack and stack[-1][1] == n:
            stack.pop()  # a declaration without a body (trait method)
    return found


def main():
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 80
    root = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "src")
    found = []
    for path in sorted(root.rglob("*.rs")):
        if path.name == "tests.rs":
            continue
        found += scan(path, limit)
    for path, start, name, length in found:
        print(f"{path}:{start}: fn {name}: {length} lines")
    print(f"{len(found)} function(s) over {limit} lines")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
