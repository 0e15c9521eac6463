"""The package's shape: stage packages whose imports run down the pipeline only, no import
circle, no module reaching into another's private names, modules a person can read in one
sitting, and tables that drive validation, help and errors alike."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import resnet_tl
from helpers import TESTS

PACKAGE = Path(resnet_tl.__file__).parent
ROOT = PACKAGE.parent

# The pipeline, in dependency order: a module may import core modules (the top level of the
# package) and modules of its own stage or of a stage listed before it, never after it.
# Training comes after evaluation and inference because a finished run writes its
# evaluation, calibration and report; evaluation uses inference's calibration and TTA.
STAGES = ("data", "models", "formats", "inference", "evaluation", "training", "export", "cli")
# Core modules import only core modules, except the recipe schema, which reads the tables
# that list what a recipe may name (each a leaf that imports only core modules).
TABLES = {"resnet_tl.models.backbones", "resnet_tl.training.optimizers", "resnet_tl.formats"}
SCHEMA = "resnet_tl.recipe_schema"
MAX_LINES = 450


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


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, names in _imports(path):
            # `from resnet_tl.data import batches` imports the submodule.
            for n in names or [""]:
                full = f"{target}.{n}" if n and f"{target}.{n}" in modules else target
                if full in modules and full != name:
                    graph[name].add(full)
    return graph


def _stage(module: str) -> str | None:
    """The stage package of a module, or None for a core module (resnet_tl.X, resnet_tl itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in STAGES) else None


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


def test_every_stage_package_is_known_and_every_module_belongs_to_one_or_the_core():
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == set(STAGES), packages


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_imports_run_down_the_pipeline_only():
    graph = _graph()
    upward = []
    for module, targets in graph.items():
        mine = _stage(module)
        for target in targets:
            theirs = _stage(target)
            if theirs is None:
                continue  # everyone may use the core
            if mine is None:
                if not (module == SCHEMA and target in TABLES) and module != "resnet_tl.__main__":
                    upward.append(f"{module} (core) -> {target}")
            elif STAGES.index(theirs) > STAGES.index(mine):
                upward.append(f"{module} ({mine}) -> {target} ({theirs})")
    assert upward == []


def test_the_tables_the_recipe_reads_import_only_the_core():
    graph = _graph()
    for table in TABLES:
        deps = {t for t in graph[table] if _stage(t) is not None and not t.startswith(table)}
        assert deps == set(), (table, deps)


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for target, names in _imports(path):
            offenders += [f"{_module_name(path)} -> {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert offenders == []


def test_every_module_reads_in_one_sitting():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_every_format_module_writes_loads_and_describes():
    import importlib

    from resnet_tl.formats import FORMATS

    for name, fmt in FORMATS.items():
        module = importlib.import_module(fmt.module)
        assert all(callable(getattr(module, f, None)) for f in ("write", "load", "io_details")), name


def test_recipe_choices_come_from_the_tables():
    from resnet_tl.formats import FORMATS, QUANT_NAMES
    from resnet_tl.models.backbones import BACKBONES
    from resnet_tl.recipe import build_recipe
    from resnet_tl.training.optimizers import OPTIMIZERS

    for name in BACKBONES:
        assert build_recipe({"model": {"backbone": name}}).model.backbone == name
    for name in OPTIMIZERS:
        assert build_recipe({"schedule": [{"optimizer": name}]}).schedule[0].optimizer == name
    recipe = build_recipe({"export": {"formats": list(FORMATS), "quantize": list(QUANT_NAMES)}})
    assert recipe.export.formats == list(FORMATS)


# A format registered by one row, pointing at a module outside the package (tests/fake_format.py):
# the help, the errors, the recipe schema and `export --format` must all take it.
_REGISTER_FAKE = (
    "import sys; sys.path.insert(0, {tests!r}); "
    "from resnet_tl.formats import FORMATS, Format; "
    "FORMATS['fake'] = Format('Fake Format', '.fake', lambda q: 'model.fake', lambda q: 'model_fake.json', "
    "'fake runtime', 'fake_format'); "
    "from resnet_tl.cli import main; sys.argv = ['resnet-tl'] + sys.argv[1:]; main()"
)


def _cli_with_fake_format(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    code = _REGISTER_FAKE.format(tests=str(TESTS))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_a_format_added_through_the_table_alone_appears_everywhere(tmp_path, shared_run):
    assert "Fake Format" in _cli_with_fake_format("--help", cwd=tmp_path).stdout
    assert "fake" in _cli_with_fake_format("export", "--help", cwd=tmp_path).stdout
    typo = _cli_with_fake_format("export", str(shared_run), "--format", "fakee", cwd=tmp_path)
    assert typo.returncode == 2 and "allowed: keras, savedmodel, tflite, onnx, openvino, fake" in typo.stderr, typo.stderr
    bad_recipe = _cli_with_fake_format("train", "--set", "export.formats=[fakee]", "--dry-run", cwd=tmp_path)
    assert bad_recipe.returncode == 2 and "fake" in bad_recipe.stderr, bad_recipe.stderr
    run = tmp_path / "run"
    import shutil

    shutil.copytree(shared_run, run, ignore=shutil.ignore_patterns("export"))
    done = _cli_with_fake_format("export", str(run), "--format", "fake", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    (art,) = result["artifacts"]
    # The fake format's loader runs the real Keras model, so its parity check is a real one.
    assert art["format"] == "fake" and art["runtime"] == "fake runtime" and art["check"] == "passed", art
    assert (run / "export" / "model.fake").is_file()
    assert json.loads((run / "export" / "model_fake.json").read_text())["format"] == "fake"


# Running a Keras model over images has one home, so every caller gets its speed (uint8 to the
# device, no host sync per batch): tests/models/test_batched.py shows evaluate, predict, export
# and bench reach it at run time; this keeps new code from growing a second path.
INFERENCE_PATH = "resnet_tl.models.batched"
KERAS_PREDICT = ("predict_on_batch", "predict_function", "make_predict_function", "stateless_call")


def test_only_the_inference_path_calls_a_models_predict():
    offenders = []
    for name, path in _modules().items():
        if name == INFERENCE_PATH:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in KERAS_PREDICT:
                offenders.append(f"{name}: .{node.attr}")
            # Keras's Model.predict (a Predictor's call is also named predict; Keras's takes these keywords)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "predict" \
                    and {k.arg for k in node.keywords} & {"verbose", "batch_size", "steps"}:
                offenders.append(f"{name}: .predict(...)")
    assert offenders == []
