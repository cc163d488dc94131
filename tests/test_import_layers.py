"""The import graph of gsbench: no module imports a higher layer (or a package beside its own on
the same layer), and no gsbench modules import each other in a cycle.

Every ``import gsbench...`` statement counts, the ones inside functions too: a deferred import
is still a dependency, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gsbench

PACKAGE_DIR = Path(gsbench.__file__).resolve().parent

#: The layers from the bottom up; a module imports only its own package and the layers below
#: it. Packages on one layer stand side by side and do not import each other: models and losses
#: (a loss reads the model's output dict by key), analysis (what reads models) and the engine.
#: docs/architecture.md draws the same picture.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("gsbench.errors", "gsbench.native"),
    ("gsbench.io", "gsbench.protocol"),
    ("gsbench.data",),
    ("gsbench.metrics", "gsbench.models", "gsbench.losses"),
    ("gsbench.recipes", "gsbench.visualize"),
    ("gsbench.analysis", "gsbench.engine"),
    ("gsbench.evaluation",),
    ("gsbench.commands", "gsbench.predict", "gsbench.weights"),
    ("gsbench.tables",),
    ("gsbench.cli",),
)
#: The package's face holds only the version; anything may read it.
FACE = "gsbench"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module name -> the gsbench modules it imports (``from a.b import c`` names ``a.b.c``
    when c is a module, else ``a.b``)."""
    paths = {_module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                    node.module.split(".")[0] == "gsbench"):
                submodules = {f"{node.module}.{a.name}" for a in node.names} & set(paths)
                targets |= submodules or {node.module}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "gsbench"}
        graph[name] = targets - {name}
    return graph


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _layer(module: str) -> tuple[int, str]:
    for number, packages in enumerate(LAYERS):
        for package in packages:
            if _within(module, package):
                return number, package
    raise AssertionError(f"{module} belongs to no layer of LAYERS: add it")


def test_every_module_imports_only_its_package_and_the_layers_below():
    graph = import_graph()
    wrong = []
    for module, targets in graph.items():
        if module == FACE:
            continue
        level, package = _layer(module)
        for target in targets - {FACE}:
            target_level, target_package = _layer(target)
            if target_package != package and target_level >= level:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports into the same or a higher layer:\n" + "\n".join(sorted(wrong))


def test_no_model_module_knows_its_loss_and_the_loss_registry_imports_no_model():
    graph = import_graph()
    assert not {t for m, ts in graph.items() if _within(m, "gsbench.models") for t in ts
                if _within(t, "gsbench.losses")}
    assert not {t for t in graph["gsbench.losses.registry"] if _within(t, "gsbench.models")}


def test_no_import_cycle_among_gsbench_modules():
    graph = import_graph()
    nodes = set(graph)
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module] & nodes):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(nodes):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
