#!/usr/bin/env python3
"""Fails when the top-level modules of a crate import each other in a cycle.

For every crate under crates/, bins/ and bench/, each `crate::name` path in a
source file (outside its `#[cfg(test)]` part) is an edge from the file's
top-level module to `name`. A cycle among those edges is reported with its
path, and the exit code is 1.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)
PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
GROUP = re.compile(r"\buse\s+crate::\{([^}]*)\}", re.S)


def top_module(src: pathlib.Path, file: pathlib.Path) -> str:
    rel = file.relative_to(src).with_suffix("")
    parts = rel.parts
    if parts in (("lib",), ("main",)):
        return "crate"
    if parts[-1] == "mod":
        parts = parts[:-1]
    return parts[0]


def edges(src: pathlib.Path) -> dict:
    graph: dict = {}
    for file in sorted(src.rglob("*.rs")):
        text = file.read_text()
        cut = text.find("#[cfg(test)]")
        if cut >= 0:
            text = text[:cut]
        text = re.sub(r"//[^\n]*", "", text)
        me = top_module(src, file)
        targets = set(PATH.findall(text))
        for group in GROUP.findall(text):
            targets.update(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group))
        for target in targets:
            module = (src / f"{target}.rs").exists() or (src / target / "mod.rs").exists()
            if module and target != me and me != "crate":
                graph.setdefault(me, set()).add(target)
    return graph


def cycles(graph: dict) -> list:
    found, seen = [], set()
    def visit(node, stack):
        if node in stack:
            cycle = stack[stack.index(node):] + [node]
            key = frozenset(cycle)
            if key not in seen:
                seen.add(key)
                found.append(cycle)
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, stack + [node])
    for start in sorted(graph):
        visit(start, [])
    return found


def main() -> int:
    failed = False
    for src in sorted(ROOT.glob("*/*/src")) + sorted(ROOT.glob("*/src")):
        found = cycles(edges(src))
        for cycle in found:
            failed = True
            print(f"{src.parent.relative_to(ROOT)}: import cycle {' -> '.join(cycle)}")
    if not failed:
        print("no import cycles between top-level modules")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
