"""Which library code each pipeline stage runs, and its hash: a rule's ``code`` param.

Editing a module a stage runs changes that stage's hash, so Snakemake reruns the stage
(and what depends on it); editing an unrelated module reruns nothing. A stage runs its
module under :mod:`simbias.stages` and everything that module imports, followed through
the package (function-level imports included). ``tests/test_layout.py`` walks the same
import graph to check that it has no cycle.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = "__init__"  # the package's own __init__.py, as a module name here

# The stage module each rule's job runs (workflow/rules/*.smk pass code_version(stage)).
STAGE_MODULES = {
    "make_data": ("stages.data",),
    "run_sgd": ("stages.sgd",),
    "run_flow": ("stages.flow",),
    "run_brute_force": ("stages.brute_force",),
    "compare": ("stages.compare",),
    "summary": ("stages.summary",),
    "figure": ("figures", "figures.phase"),  # the regimes' figures and the phase diagrams
    "table_html": ("tables",),
}
# storage serves every stage. The config modules reach jobs only through their params, and
# __init__ / logs do not change results, so editing those reruns nothing.
ALWAYS = ("storage",)
NEVER = (ROOT, "code_version", "config", "config_job", "config_messages", "config_yaml", "logs", "_version")
# Files of the package a module reads as source at run time: hashed with that module. (The GPU
# kernels are compiled from these; cuda/cpu_shim.cpp only builds them for the tests.)
READS = {"cuda_build": ("cuda/kernels.cu", "cuda/sgd_step.cuh")}


def module_path(module: str) -> Path | None:
    """The file of a module of this package ('stages.sgd', 'stages' or '__init__'), or None."""
    if module == ROOT:
        return PACKAGE / "__init__.py"
    base = PACKAGE.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def _package_of(module: str) -> list[str]:
    """The package a module's relative imports start from, as a list of name parts."""
    if module == ROOT:
        return []
    parts = module.split(".")
    path = module_path(module)
    return parts if path is not None and path.name == "__init__.py" else parts[:-1]


def _resolve(parts: list[str]) -> str | None:
    name = ".".join(parts) or ROOT
    return name if module_path(name) is not None else None


def local_imports(module: str) -> set[str]:
    """The modules of this package that ``module`` imports, anywhere in its source.

    ``from . import x`` counts as importing the module x when there is one, and the
    package's ``__init__`` otherwise; absolute ``simbias.…`` imports count alike.
    """
    path = module_path(module)
    if path is None:
        return set()
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names = node.module.split(".") if node.module else []
            if node.level:
                base = _package_of(module)
                target = base[: len(base) - node.level + 1] + names
            elif names and names[0] == "simbias":
                target = names[1:]
            else:
                continue
            attributes = False  # an imported name that is not a module is the target's attribute
            for alias in node.names:
                sub = _resolve(target + [alias.name])
                if sub is None:
                    attributes = True
                else:
                    out.add(sub)
            if (node.module and target) or attributes:
                if (mod := _resolve(target)) is not None:
                    out.add(mod)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "simbias":
                    mod = _resolve(parts[1:])
                    if mod is not None:
                        out.add(mod)
    out.discard(module)
    return out


def stage_modules(stage: str) -> set[str]:
    """Every module a stage's job runs: its stage module and what that imports, followed."""
    todo, seen = list(STAGE_MODULES[stage]), set()
    while todo:
        mod = todo.pop()
        if mod in seen or mod in NEVER or mod in ALWAYS:
            continue
        seen.add(mod)
        todo.extend(local_imports(mod))
    return seen | set(ALWAYS)


@functools.cache
def code_version(stage: str) -> str:
    """sha256 (16 hex digits) of the library source a stage runs (:func:`stage_modules`), with
    the files those modules read as source (``READS``)."""
    h = hashlib.sha256()
    for mod in sorted(stage_modules(stage)):
        path = module_path(mod)
        if path is not None:
            h.update(mod.encode() + b"\0" + path.read_bytes() + b"\0")
        for name in READS.get(mod, ()):
            h.update(name.encode() + b"\0" + (PACKAGE / name).read_bytes() + b"\0")
    return h.hexdigest()[:16]
