"""The package's shape: imports run one way, no module reaches into another's
private names, and the tables that drive validation agree with each other."""

from __future__ import annotations

import ast
from pathlib import Path

import resnet_tl

PACKAGE = Path(resnet_tl.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every resnet_tl import in the file, at any
    depth except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []

    def visit(node):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("resnet_tl"):
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names if a.name.startswith("resnet_tl"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, names in _imports(path):
            # `from resnet_tl.data import batches` imports the submodule.
            for n in names or [""]:
                full = f"{target}.{n}" if n and f"{target}.{n}" in modules else target
                if full in modules and full != name:
                    graph[name].add(full)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def walk(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            # A package's __init__ importing its own submodules is how packages work.
            if nxt.startswith(node + ".") or node.startswith(nxt + ".") and nxt == node.rsplit(".", 1)[0]:
                continue
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node, [])
    return cycles


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for target, names in _imports(path):
            offenders += [f"{_module_name(path)} -> {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert offenders == []


def test_every_format_has_a_writer_and_a_loader():
    from resnet_tl.export.exporter import WRITERS
    from resnet_tl.formats import FORMATS
    from resnet_tl.formats.predictor import LOADERS

    assert set(WRITERS) == set(FORMATS) == set(LOADERS)


def test_recipe_choices_come_from_the_tables():
    from resnet_tl.models.backbones import BACKBONES
    from resnet_tl.formats import FORMATS, QUANT_NAMES
    from resnet_tl.training.optimizers import OPTIMIZERS
    from resnet_tl.recipe import build_recipe

    for name in BACKBONES:
        assert build_recipe({"model": {"backbone": name}}).model.backbone == name
    for name in OPTIMIZERS:
        assert build_recipe({"schedule": [{"optimizer": name}]}).schedule[0].optimizer == name
    recipe = build_recipe({"export": {"formats": list(FORMATS), "quantize": list(QUANT_NAMES)}})
    assert recipe.export.formats == list(FORMATS)
