#!/usr/bin/env python3
"""Counts the public API of tower-stepup from rustdoc's JSON output.

Usage: scripts/api-count.sh [cargo features args]  (runs rustdoc, then this script)
       scripts/api_count.py target/doc/tower_stepup.json

Walks the public module tree from the crate root, following re-exports, and prints:
root re-exports, public types (struct, enum, trait, union, type alias), public
constants, public functions at module level, and the names of types defined under two
public paths with the same last name (clashes).
"""
import json
import sys
from collections import defaultdict

TYPES = {"struct", "enum", "trait", "union", "type_alias"}


def kind(item):
    return next(iter(item["inner"])) if isinstance(item["inner"], dict) else item["inner"]


def main(path):
    doc = json.load(open(path))
    index = doc["index"]
    root = index[str(doc["root"])]
    seen = {}  # item id -> first public path
    root_reexports = []

    def visit(module_id, prefix):
        module = index[str(module_id)]
        for child in module["inner"]["module"]["items"]:
            item = index.get(str(child))
            if item is None:
                continue
            k = kind(item)
            if k == "use":
                use = item["inner"]["use"]
                if module_id == doc["root"]:
                    root_reexports.append(use["name"])
                target = use.get("id")
                if target is not None and str(target) in index:
                    record(target, prefix + [use["name"]])
                continue
            if item.get("visibility") != "public":
                continue
            record(child, prefix + [item["name"]])

    def record(item_id, path):
        item = index[str(item_id)]
        k = kind(item)
        if k == "module":
            if item_id not in seen:
                seen[item_id] = path
                visit(item_id, path)
            return
        seen.setdefault(item_id, path)

    visit(doc["root"], [root["name"]])
    counts = defaultdict(int)
    by_name = defaultdict(set)
    for item_id, path in seen.items():
        k = kind(index[str(item_id)])
        if k in TYPES:
            counts["types"] += 1
            by_name[path[-1].lower()].add("::".join(path))
        elif k == "constant":
            counts["constants"] += 1
        elif k == "function":
            counts["functions"] += 1
        elif k == "module":
            counts["modules"] += 1
            by_name[path[-1].lower()].add("::".join(path) + " (module)")
    print(f"root re-exports: {len(root_reexports)}")
    print(f"public types:    {counts['types']}")
    print(f"public consts:   {counts['constants']}")
    print(f"public fns:      {counts['functions']}")
    print(f"public modules:  {counts['modules']}")
    def clash(paths):
        # A module and the type it is named after (`store` and `store::Store`) do not clash.
        modules = [p[: -len(" (module)")] for p in paths if p.endswith(" (module)")]
        rest = [p for p in paths if not p.endswith(" (module)")]
        rest = [p for p in rest if not any(p.startswith(m + "::") for m in modules)]
        return len(rest) + len(modules) > 1 and len(rest) > 0

    clashes = {n: p for n, p in by_name.items() if clash(p)}
    for name in sorted(clashes):
        print(f"clash: {name}: {', '.join(sorted(clashes[name]))}")
    print(f"clashes:         {len(clashes)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/doc/tower_stepup.json")
