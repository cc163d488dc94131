"""The import graph of gsbench: the lower layers never import a higher one, and the layers
below the engine have no import cycle.

Every ``import gsbench...`` statement counts, the ones inside functions too: a deferred import
is still a dependency, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gsbench

PACKAGE_DIR = Path(gsbench.__file__).resolve().parent

#: What each lower layer may import from gsbench besides its own modules. Models and losses
#: stand side by side (a loss reads the model's output dict by key, no model imports a loss);
#: what reads models (gsbench.analysis, gsbench.recipes) sits above both.
ALLOWED_IMPORTS = {
    "gsbench.data": {"gsbench.errors", "gsbench.io"},
    "gsbench.metrics": {"gsbench.errors", "gsbench.data"},
    "gsbench.models": {"gsbench.errors", "gsbench.data"},
    "gsbench.losses": {"gsbench.errors", "gsbench.data"},
    "gsbench.analysis": {"gsbench.errors", "gsbench.data", "gsbench.metrics", "gsbench.models",
                         "gsbench.recipes"},
}

#: The layers whose modules must not import each other in a cycle.
ACYCLIC = ("gsbench.errors", "gsbench.io", "gsbench.data", "gsbench.metrics", "gsbench.models",
           "gsbench.losses", "gsbench.analysis", "gsbench.recipes")


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


def test_lower_layers_import_only_what_is_below_them():
    graph = import_graph()
    wrong = []
    for layer, allowed in ALLOWED_IMPORTS.items():
        for module, targets in graph.items():
            if not _within(module, layer):
                continue
            for target in targets:
                if not any(_within(target, ok) for ok in (layer, *allowed)):
                    wrong.append(f"{module} imports {target}")
    assert not wrong, "imports into a higher layer:\n" + "\n".join(sorted(wrong))


def test_no_model_module_knows_its_loss_and_the_loss_registry_imports_no_model():
    graph = import_graph()
    assert not {t for m, ts in graph.items() if _within(m, "gsbench.models") for t in ts
                if _within(t, "gsbench.losses")}
    assert not {t for t in graph["gsbench.losses.registry"] if _within(t, "gsbench.models")}


def test_no_import_cycle_below_the_engine():
    graph = import_graph()
    nodes = {m for m in graph if any(_within(m, layer) for layer in ACYCLIC)}
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
