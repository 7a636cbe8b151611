"""No import cycles between stepjudge modules, lazy (function-level) imports included.

Every module is parsed (not imported), every ``import stepjudge...`` / ``from stepjudge... import``
anywhere in it becomes an edge to the module it names (``from pkg import sub`` to ``pkg.sub`` when
``sub`` is a module, else to ``pkg``), and any strongly connected group of two or more modules is a
cycle. A package's ``__init__`` importing its own submodules is not counted against the submodules:
Python runs the parent ``__init__`` first, which is the normal way a package exposes its API.
"""

from __future__ import annotations

import ast
from pathlib import Path

import stepjudge

ROOT = Path(stepjudge.__file__).resolve().parent


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``package_dir`` (a package)."""
    base = package_dir.parent
    out = {}
    for f in sorted(package_dir.rglob("*.py")):
        parts = list(f.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The module that ``name`` lives in: itself if it is a module, else its nearest module prefix."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its file."""
    modules = module_files(package_dir)
    top = package_dir.name
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[:len(pkg) - (node.level - 1)]
                    base = ".".join([*pkg, *([node.module] if node.module else [])])
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                if t == top or t.startswith(top + "."):
                    owner = _owner(t, modules)
                    if owner and owner != mod:
                        graph[mod].add(owner)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan), each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(groups)


def _describe(graph: dict[str, set[str]], group: list[str]) -> str:
    members = set(group)
    return "; ".join(f"{a} -> {b}" for a in group for b in sorted(graph[a] & members))


def test_no_import_cycles_in_stepjudge():
    graph = import_graph(ROOT)
    assert len(graph) > 50 and "stepjudge.tasks.base" in graph["stepjudge.tasks.arith"]
    cycles = find_cycles(graph)
    assert cycles == [], "import cycles: " + " | ".join(_describe(graph, c) for c in cycles)


def test_the_checker_finds_lazy_and_relative_cycles(tmp_path):
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from toy.a import f\n")
    (pkg / "a.py").write_text("import os\n\ndef f():\n    from toy.b import g  # lazy\n    return g()\n")
    (pkg / "b.py").write_text("from . import a\n\ndef g():\n    return 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from ..b import g\nfrom toy import sub\n")
    graph = import_graph(pkg)
    assert graph == {"toy": {"toy.a"}, "toy.a": {"toy.b"}, "toy.b": {"toy.a"}, "toy.sub": set(),
                     "toy.sub.c": {"toy.b", "toy.sub"}}
    assert find_cycles(graph) == [["toy.a", "toy.b"]]
    assert _describe(graph, ["toy.a", "toy.b"]) == "toy.a -> toy.b; toy.b -> toy.a"
