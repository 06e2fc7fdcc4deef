#!/usr/bin/env python3
"""Finds cycles in the import graph of a crate's modules (`make lint` runs it on function/src).

Every file is a module (`a/b.rs` and `a/b/mod.rs` are `a::b`). A path that a file names
(`crate::x::y`, `super::z`, in `use` lines and in code) is an arrow from the file's module to the
longest module that the path starts with. Arrows are then compared between siblings: at each
level of the tree, module A uses its sibling B when anything inside A names anything inside B.
A child naming its parent (or an ancestor) is not an arrow between siblings. Test modules count
like the rest. Exits 1 and prints every cycle (strongly connected group) found.
"""

import re
import sys
from pathlib import Path

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)")
GROUP = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*?)\}", re.S)
COMMENT = re.compile(r"//[^\n]*")


def module_of(root: Path, file: Path) -> tuple:
    parts = list(file.relative_to(root).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def resolve(module: tuple, is_dir_module: bool, head: str, rest: list) -> tuple:
    """The absolute path named from `module` by `head::rest`."""
    if head == "crate":
        return tuple(rest)
    base = list(module)
    if head == "super":
        # `super` in a file module is its parent; `super::super` goes on up.
        base = base[:-1]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    return tuple(base) + tuple(rest)


def targets(text: str, module: tuple, is_dir: bool, modules: set) -> set:
    text = COMMENT.sub("", text)
    named = []
    for head, prefix, inner in GROUP.findall(text):
        base = [p for p in prefix.split("::") if p]
        for item in re.split(r"[,\s]+", inner):
            item = item.split(" as ")[0].strip("{} ")
            if item:
                named.append((head, base + [p for p in item.split("::") if p and p != "self"]))
    for head, path in PATH.findall(text):
        named.append((head, [p for p in path.split("::") if p and p != "{"]))
    found = set()
    for head, rest in named:
        path = resolve(module, is_dir, head, rest)
        while path and path not in modules:
            path = path[:-1]
        if path:
            found.add(path)
    return found


def strongly_connected(nodes, edges):
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main(root: str) -> int:
    root = Path(root)
    files = [f for f in root.rglob("*.rs") if "bin" not in f.relative_to(root).parts]
    modules = {module_of(root, f) for f in files}
    # Parents of every module are modules too (a folder without mod.rs is not in this crate).
    arrows = {}
    for f in files:
        m = module_of(root, f)
        arrows[m] = targets(f.read_text(), m, f.name == "mod.rs", modules)
    cycles = []
    parents = {m[:-1] for m in modules if m}
    for parent in sorted(parents):
        children = {m[len(parent)] for m in modules if len(m) > len(parent) and m[: len(parent)] == parent}
        edges = {}
        for m, named in arrows.items():
            if len(m) <= len(parent) or m[: len(parent)] != parent:
                continue
            a = m[len(parent)]
            for t in named:
                if len(t) > len(parent) and t[: len(parent)] == parent and t[len(parent)] != a:
                    edges.setdefault(a, set()).add(t[len(parent)])
        for group in strongly_connected(children, edges):
            where = "::".join(("crate",) + parent)
            cycles.append(f"{where}: {' <-> '.join(group)}")
    for c in cycles:
        print(f"cycle in {c}")
    if not cycles:
        print(f"no cycles among the {len(modules)} modules of {root}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "function/src"))
