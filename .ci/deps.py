#!/usr/bin/env python3
"""Module graph of src/: which module's code names which other module, and whether that graph
has a circle.

Each file under src/ is one node (src/a.rs and src/a/mod.rs are `a`, src/a/b.rs is `a::b`);
modules written inline stay part of their file. An edge a -> b is any path `crate::b::...` (or
`super::...` resolved) in a's non-test code; a path through the crate root's re-exports counts
as the module re-exported; a bare `child::...` path names a child module. A child module is part
of its parent (it holds methods of the parent's types, and sees its private items), so a
child naming an ancestor is no edge; the parent naming a child is one, and so is every edge
between siblings. Test code is left out: files named tests.rs, the src/tests/ folder,
and `#[cfg(test)] mod tests { ... }` / `#[cfg(all(test, loom))] mod ... { ... }` blocks.

Usage: python3 .ci/deps.py [--graph]   (exit 1 and the circles printed when there is one;
--graph prints every module, its line count and what it names)
"""
import os
import re
import sys

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(rel):
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return "::".join(parts)


def strip_tests(text):
    """Removes test-only modules (brace matched) and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    out = []
    i = 0
    pat = re.compile(r"#\[cfg\((?:test|all\(test[^\]]*\)|any\(test[^\]]*\))\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*([{;])")
    while True:
        m = pat.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i:m.start()])
        if m.group(1) == ";":
            i = m.end()
            continue
        depth = 1
        j = m.end()
        while depth and j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        i = j
    return "".join(out)


def main():
    files = {}
    for root, dirs, names in os.walk(SRC):
        rel_root = os.path.relpath(root, SRC)
        if rel_root.split(os.sep)[0] == "tests":
            continue
        for n in names:
            if not n.endswith(".rs") or n == "tests.rs":
                continue
            rel = os.path.normpath(os.path.join(rel_root, n))
            files[module_of(rel)] = os.path.join(root, n)
    modules = set(files)
    root_text = open(files[""]).read()
    reexports = {}
    for m in re.finditer(r"pub use (\w+(?:::\w+)*)::(\{[^}]*\}|\w+)", root_text):
        names = re.findall(r"\w+", m.group(2))
        for n in names:
            reexports[n] = m.group(1)

    def resolve(path):
        parts = path.split("::")
        if parts and parts[0] in reexports and parts[0] not in modules:
            parts = reexports[parts[0]].split("::") + parts[1:]
        for k in range(len(parts), 0, -1):
            cand = "::".join(parts[:k])
            if cand in modules:
                return cand
        return None

    edges = {m: set() for m in modules}
    lines = {}
    for mod, path in files.items():
        raw = open(path).read()
        lines[mod] = raw.count("\n")
        text = strip_tests(raw)
        refs = []
        # `use crate::a::{b, c::d}` lists: expand one level.
        for m in re.finditer(r"crate::((?:\w+::)*)\{([^}]*)\}", text):
            for item in re.findall(r"\w+(?:::\w+)*", m.group(2)):
                refs.append(m.group(1) + item)
        for m in re.finditer(r"crate::(\w+(?:::\w+)*)", text):
            refs.append(m.group(1))
        for m in re.finditer(r"\bsuper::(\w+(?:::\w+)*)", text):
            parent = mod.split("::")[:-1]
            refs.append("::".join(parent + [m.group(1)]) if parent else m.group(1))
        # Bare paths into this module's own children (`use region::RegionHeader;` in arena).
        children = [m for m in modules if "::" in m and m.rsplit("::", 1)[0] == mod]
        for child in children:
            leaf = child.rsplit("::", 1)[1]
            if re.search(r"(?<![\w:])" + leaf + r"::", text):
                refs.append(child)
        for r in refs:
            t = resolve(r.strip(":"))
            if t is None or t == mod or t == "" or mod == "":
                continue
            if mod.startswith(t + "::"):
                continue  # a child naming its ancestor: the same module family
            edges[mod].add(t)

    # Tarjan's strongly connected components.
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            visit(v)

    if "--graph" in sys.argv:
        for v in sorted(modules, key=lambda m: (m != "", m)):
            name = v or "(crate root)"
            print(f"{name:20} {lines[v]:5}  -> {', '.join(sorted(edges[v])) or '-'}")
    circles = [sorted(c) for c in sccs if len(c) > 1]
    if circles:
        for c in circles:
            inner = [f"{a} -> {b}" for a in c for b in sorted(edges[a]) if b in c]
            print("import circle: " + ", ".join(c) + "  (" + "; ".join(inner) + ")")
        sys.exit(1)
    print(f"module graph: {len(modules)} modules, no import circle")


if __name__ == "__main__":
    main()
