"""Reads `cargo metadata` on stdin: fails if a normal dependency of the crate (any
feature) declares a `rust-version` newer than the crate's own. See msrv-check.sh."""
import json
import sys


def version(v):
    return tuple(int(p) for p in (v.split(".") + ["0", "0"])[:3])


meta = json.load(sys.stdin)
packages = {p["id"]: p for p in meta["packages"]}
root = meta["resolve"]["root"]
ours = packages[root]["rust_version"]
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}

# Normal dependencies only (what users compile), from the crate down.
seen, todo = set(), [root]
while todo:
    for dep in nodes[todo.pop()]["deps"]:
        normal = any(k["kind"] is None for k in dep["dep_kinds"])
        if normal and dep["pkg"] not in seen:
            seen.add(dep["pkg"])
            todo.append(dep["pkg"])

newer = []
for pkg in sorted((packages[i] for i in seen), key=lambda p: p["name"]):
    needs = pkg.get("rust_version")
    if needs and version(needs) > version(ours):
        newer.append("  %s %s needs Rust %s" % (pkg["name"], pkg["version"], needs))

print("msrv-check: rust-version %s; %d dependencies checked" % (ours, len(seen)))
if newer:
    print("msrv-check: dependencies that need a newer Rust than the crate says:")
    print("\n".join(newer))
    sys.exit(1)
