"""Run folders: naming, creation without overwriting, status.json, and every path inside one.

A run folder holds everything a person wants after training::

    recipe.yaml   labels.txt   data_report.json   status.json   calibration.json
    model.keras   history.csv  metrics.json       report.html   checkpoint/
    plots/curves.png           tensorboard/       eval/<split>/  export/

`RunPaths` is the one place these names are spelled.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from resnet_tl.errors import UserError
from resnet_tl.fileio import atomic_write_json, atomic_write_text
from resnet_tl.recipe import Recipe, dump_recipe, load_recipe, locked_view

STATUSES = ("running", "interrupted", "failed", "complete")


@dataclass(frozen=True)
class RunPaths:
    """Where each artifact of a run lives."""

    root: Path

    @property
    def recipe(self) -> Path: return self.root / "recipe.yaml"
    @property
    def labels(self) -> Path: return self.root / "labels.txt"
    @property
    def model(self) -> Path: return self.root / "model.keras"
    @property
    def history(self) -> Path: return self.root / "history.csv"
    @property
    def metrics(self) -> Path: return self.root / "metrics.json"
    @property
    def calibration(self) -> Path: return self.root / "calibration.json"
    @property
    def data_report(self) -> Path: return self.root / "data_report.json"
    @property
    def status(self) -> Path: return self.root / "status.json"
    @property
    def checkpoint_dir(self) -> Path: return self.root / "checkpoint"
    @property
    def checkpoint(self) -> Path: return self.checkpoint_dir / "last.npz"
    @property
    def previous_checkpoint(self) -> Path: return self.checkpoint_dir / "prev.npz"
    @property
    def best_weights(self) -> Path: return self.checkpoint_dir / "best.npz"
    @property
    def plots(self) -> Path: return self.root / "plots"
    @property
    def curves(self) -> Path: return self.plots / "curves.png"
    @property
    def tensorboard(self) -> Path: return self.root / "tensorboard"
    @property
    def report(self) -> Path: return self.root / "report.html"
    @property
    def audit(self) -> Path: return self.root / "audit"  # `resnet-tl data audit --run`
    @property
    def excluded(self) -> Path: return self.root / "excluded.txt"  # images data.exclude left out
    @property
    def eval_root(self) -> Path: return self.root / "eval"
    @property
    def export_dir(self) -> Path: return self.root / "export"

    def eval_dir(self, split: str) -> Path:
        """eval/<split>/: the files `evaluate` writes for one split."""
        return self.eval_root / split


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_run_name(recipe_name: str) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{recipe_name}-{stamp}"


def check_new_run(out: str | Path, name: str) -> Path:
    """Refuse, before any work, a name that escapes `out`, an unusable `out`,
    or an existing run folder; returns the folder-to-be (not created)."""
    if not _SAFE_NAME.match(name):
        raise UserError(f"--name: received {name!r}; allowed: letters, digits, '.', '_' and '-' (no path separators), starting with a letter or digit")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}': exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out '{out}': cannot create the folder ({e.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UserError(f"--out '{out}': not writable")
    root = out / name
    if root.exists():
        raise UserError(f"run folder '{root}' already exists; choose another --name, or resume it with --resume {root}")
    return root


def create_run_dir(out: str | Path, name: str) -> RunPaths:
    """Make `out/name` (see `check_new_run`); an existing folder is never reused."""
    root = check_new_run(out, name)
    try:
        root.mkdir()
    except FileExistsError:
        raise UserError(f"run folder '{root}' already exists; choose another --name, or resume it with --resume {root}") from None
    except OSError as e:
        raise UserError(f"run folder '{root}': cannot create it ({e.strerror})") from None
    return RunPaths(root)


def read_status(paths: RunPaths) -> dict:
    try:
        return json.loads(paths.status.read_text())
    except (OSError, ValueError):
        return {}


def write_status(paths: RunPaths, status: str, **extra) -> None:
    """Record running / interrupted / failed / complete with timestamps."""
    assert status in STATUSES
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    old = read_status(paths)
    # Keep what earlier writes recorded (start time, the locked recipe view),
    # drop what belonged only to the previous state.
    kept = {k: v for k, v in old.items() if k not in ("status", "updated", "error", "finished")}
    doc = {**kept, "status": status, "started": old.get("started", now), "updated": now, **extra}
    if status == "complete":
        doc["finished"] = now
    atomic_write_json(paths.status, doc)


def is_run(path: str | Path) -> bool:
    """Whether `path` is a run folder (it holds recipe.yaml); the one test for it."""
    p = Path(path)
    return p.is_dir() and (p / "recipe.yaml").is_file()


def open_run(run: str | Path, *, finished: bool = False) -> RunPaths:
    """An existing run folder (for resume, evaluate, export).

    finished: also require model.keras and labels.txt (training completed).
    """
    root = Path(run)
    if not root.is_dir():
        raise UserError(f"run folder '{run}' not found")
    if not is_run(root):
        raise UserError(f"'{run}' is not a resnet-tl run folder (no recipe.yaml)")
    paths = RunPaths(root)
    if finished:
        for p in (paths.model, paths.labels):
            if not p.is_file():
                raise UserError(f"run '{run}' has no {p.name} (training did not finish); allowed: a finished run or a model file")
    return paths


def resolve_model(path: str | Path) -> tuple[Path, RunPaths | None]:
    """(model file, run) for a run folder (its model.keras) or (path, None) for a model file."""
    if is_run(path):
        run = open_run(path, finished=True)
        return run.model, run
    return Path(path), None


def read_labels(path: str | Path, what: str = "labels file") -> list[str]:
    """Class names from a text file, one per line (blank lines ignored); the one reader of labels.txt."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"{what} '{path}': cannot be read ({e.strerror})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise UserError(f"{what} '{path}': received no class names; allowed: one class name per line")
    return names


def write_labels(path: str | Path, labels: list[str]) -> None:
    atomic_write_text(path, "\n".join(labels) + "\n")


def resume_recipe(run: str | Path, recipe_arg: str | None, overrides: list[str], data_dir: str | None) -> Recipe:
    """The recipe stored in `run`, refused if edited where it defines the checkpoint.

    One override is allowed: ``--set model.weights=PATH``, where the pretrained
    weights come from (a download that failed offline); it is written into
    RUN/recipe.yaml. A run with a checkpoint does not read them at all.
    """
    others = [o for o in overrides if o.partition("=")[0].strip() != "model.weights"]
    if recipe_arg or others:
        raise UserError("--resume continues with the recipe stored in the run folder; drop the RECIPE argument and --set "
                        "(all but --set model.weights=PATH; edit RUN/recipe.yaml only where it does not change the model or schedule)")
    paths = open_run(run)
    recipe = load_recipe(str(paths.recipe), overrides, data_dir=data_dir)
    if overrides:
        value = recipe.model.weights
        local = Path(value).expanduser()
        value = str(local.resolve()) if local.is_file() else value  # stored absolute, as a new run stores it
        recipe = recipe.model_copy(update={"model": recipe.model.model_copy(update={"weights": value})})
    stored = read_status(paths).get("locked")
    if stored is not None:
        now = json.loads(json.dumps(locked_view(recipe)))
        if isinstance(now.get("model"), dict) and isinstance(stored.get("model"), dict):
            now["model"]["weights"] = stored["model"].get("weights")  # may change: see above
        for key, value in stored.items():
            if now.get(key) != value:
                raise UserError(
                    f"{paths.recipe}: '{key}' was edited (run started with {json.dumps(value)}, now {json.dumps(now.get(key))}); "
                    "a resumed run cannot change the model, schedule or data split; start a new run with this recipe instead"
                )
    if overrides:
        atomic_write_text(paths.recipe, dump_recipe(recipe))
    return recipe
