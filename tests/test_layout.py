"""The package's layout: no import cycle, and the library never imports Snakemake.

The import graph is the one :mod:`simbias.code_version` follows to hash the code a stage
runs: every ``import`` of a package module anywhere in a module's source, function-level
imports included. Run it alone with ``.venv/bin/python -m pytest tests/test_layout.py``.
"""

from __future__ import annotations

import ast

import pytest

from simbias import code_version

MODULES = sorted(
    code_version.ROOT
    if p == code_version.PACKAGE / "__init__.py"
    else ".".join(p.relative_to(code_version.PACKAGE).with_suffix("").parts).removesuffix(".__init__")
    for p in code_version.PACKAGE.rglob("*.py")
)


def import_graph() -> dict[str, set[str]]:
    return {m: code_version.local_imports(m) for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for u in sorted(graph.get(v, ())):
            if u not in index:
                visit(u)
                low[v] = min(low[v], low[u])
            elif u in on_stack:
                low[v] = min(low[v], index[u])
        if low[v] == index[v]:
            comp = []
            while True:
                u = stack.pop()
                on_stack.discard(u)
                comp.append(u)
                if u == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_every_kind_of_import():
    graph = import_graph()
    assert {"stages", "stages.sgd", code_version.ROOT} <= set(MODULES)
    assert {"ensemble", "sgd", "sam"} <= graph["stages.sgd"]  # module-level, from a subpackage
    assert "kernels_cpu" in graph["sgd"] and "gpu" in graph["sgd"]  # function-level imports
    assert graph["results"] == {"storage"}


def test_a_cycle_is_found():
    """The checker itself: a planted two-module cycle and a three-module one are reported."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("module", MODULES)
def test_the_library_never_imports_snakemake(module):
    tree = ast.parse(code_version.module_path(module).read_text(encoding="utf-8"))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level]
    assert not [n for n in names if n.split(".")[0] == "snakemake"]
