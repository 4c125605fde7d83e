#!/usr/bin/env python3
"""Checks the layering ARCHITECTURE.md states: the `use crate::...` graph
of src/ has no cycle between modules, and no module imports a layer above
its own. Prints the graph with --graph. Run by .ci/run."""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# Lowest first. A module may import its own layer's leaves and any layer
# below; a path prefix names every module under it.
LAYERS = [
    ["error", "changeset"],
    ["optimize", "store", "observe::status", "observe::logger", "config::words"],
    ["config"],
    ["watch", "aggregate"],
    ["deliver"],
    ["observe", "commit"],
    ["daemon", "commands", "lib", "main"],
]


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return "::".join(parts)


def layer_of(module):
    best = None
    for i, names in enumerate(LAYERS):
        for n in names:
            if module == n or module.startswith(n + "::"):
                if best is None or len(n) > len(best[1]):
                    best = (i, n)
    return best[0] if best else None


def known(modules, path):
    """The longest module of `modules` that `path` (a::b::c) names."""
    parts = path.split("::")
    for k in range(len(parts), 0, -1):
        cand = "::".join(parts[:k])
        if cand in modules:
            return cand
    return None


def graph():
    files = {}
    for root, _, names in os.walk(SRC):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(root, n)
                files[module_of(p)] = p
    modules = set(files)
    edges = {m: set() for m in modules}
    for m, p in files.items():
        text = open(p, encoding="utf-8").read()
        text = text.split("#[cfg(test)]")[0]
        for path in re.findall(r"crate::((?:[a-z_]+::)*[a-z_]+)", text):
            t = known(modules, path)
            if t and t != m:
                edges[m].add(t)
        base = "" if m in ("lib", "main") else m + "::"
        for path in re.findall(r"\bself::((?:[a-z_]+::)*[a-z_]+)", text):
            t = known(modules, base + path)
            if t and t != m:
                edges[m].add(t)
        # `use child::...` (2018 paths from a module to its own children,
        # and from the crate root to the top modules).
        for path in re.findall(r"^\s*(?:pub )?use ((?:[a-z_]+::)+[a-zA-Z_]+)", text, re.M):
            if path.startswith(("crate::", "self::", "super::", "std::")):
                continue
            t = known(modules, base + path)
            if t and t != m:
                edges[m].add(t)
        parent = m.rsplit("::", 1)[0] if "::" in m else None
        for path in re.findall(r"\bsuper::((?:[a-z_]+::)*[a-z_]+)", text):
            if parent:
                t = known(modules, parent + "::" + path)
                if t and t != m:
                    edges[m].add(t)
    return edges


def cycles(edges):
    out, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for t in sorted(edges[n]):
            if state.get(t) == 1:
                out.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n)
    return out


def main():
    edges = graph()
    if "--graph" in sys.argv:
        for m in sorted(edges):
            print(f"{m} -> {', '.join(sorted(edges[m])) or '(nothing)'}")
    bad = []
    for c in cycles(edges):
        bad.append("cycle: " + " -> ".join(c))
    for m in sorted(edges):
        lm = layer_of(m)
        if lm is None:
            bad.append(f"{m}: in no layer of .ci/layers.py")
            continue
        for t in sorted(edges[m]):
            lt = layer_of(t)
            if lt is not None and lt > lm:
                bad.append(f"{m} (layer {lm}) imports {t} (layer {lt})")
    for b in bad:
        print("layers: " + b)
    if bad:
        sys.exit(1)
    print(f"layers: {len(edges)} modules, no cycle, no import upwards")


main()
