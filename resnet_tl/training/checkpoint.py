"""Checkpoints of a run: training state, best weights and history, written atomically.

A run folder's ``checkpoint/`` holds three files, each written whole or not
at all (`resnet_tl.fileio.atomic_path`):
    last.npz   every variable of the classifier ("model/00000", ...), of the
               augmenter ("augment/..."), of the optimizer ("optimizer/...") and
               of the weights' average with train.ema ("ema/..."), plus "state":
               the JSON of a `RunState` (where training stands)
    prev.npz   the checkpoint before last.npz, kept in case last.npz is
               damaged later (a disk error, a bad copy): resume falls back to it
    best.npz   the classifier's variables at the best epoch so far (the
               averaged ones with train.ema)

Variables are stored in the model's own variable order, and shapes are checked
on restore, so a checkpoint of another model is refused with one line.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import shutil
import signal
import warnings
import zipfile
import zlib
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from resnet_tl import faults
from resnet_tl.errors import UserError
from resnet_tl.fileio import atomic_path, atomic_write_text
from resnet_tl.runs import RunPaths
from resnet_tl.training.distribute import to_numpy

CHECKPOINT_VERSION = 1
HISTORY_FIELDS = ("phase", "epoch", "lr", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")


@dataclass
class RunState:
    """Where a run stands after an epoch: enough to continue it exactly.

    phase / epoch_in_phase: the next epoch to train (an early-stopped phase
    is recorded as finished). optimizer_phase: the phase whose optimizer
    variables the checkpoint holds. best_value / best_epoch: of the monitored
    quantity; patience_left: early stopping's count within the phase.
    ema_updates: steps the weights' average has taken (its warm-up counts them).
    """
    phase: int = 0
    epoch_in_phase: int = 0
    optimizer_phase: int | None = None
    epochs_done: int = 0
    history: list[dict] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int = 0
    patience_left: int | None = None
    ema_updates: int = 0
    version: int = CHECKPOINT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "RunState":
        doc = json.loads(text)
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class Checkpoint:
    """A loaded last.npz: the state and the variables' arrays by key."""
    state: RunState
    arrays: dict[str, np.ndarray]


def is_better(monitor: str, value: float, best: float | None) -> bool:
    """Whether `value` of `monitor` improves on `best` (accuracy up, losses down; NaN never)."""
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best if monitor == "val_accuracy" else value < best


# ------------------------------------------------------------------ writing
def write_epoch(paths: RunPaths, state: RunState, classifier, augmenter, optimizer, improved: bool, ema=None) -> None:
    """Best weights (if improved; the average with `ema`, a training.ema.WeightEMA), then
    the checkpoint, then history.csv; Ctrl-C waits."""
    with defer_sigint():
        if improved:
            with ema.applied() if ema is not None else nullcontext():
                save_arrays(paths.best_weights, variables_arrays("model/", classifier.variables))
        arrays = variables_arrays("model/", classifier.variables)
        if augmenter is not None:
            arrays.update(variables_arrays("augment/", augmenter.variables))
        arrays.update(variables_arrays("optimizer/", optimizer.variables))
        if ema is not None:
            arrays.update(variables_arrays("ema/", ema.variables))
        arrays["state"] = np.array(state.to_json())
        keep_previous(paths.checkpoint, paths.previous_checkpoint)
        save_arrays(paths.checkpoint, arrays)
        write_history(paths, state.history)


def keep_previous(path: Path, previous: Path) -> None:
    """Make `previous` a copy of `path` (a hard link: no bytes copied), atomically.

    Called before `path` is replaced, so that both a crash and a later damage
    of `path` leave one good checkpoint.
    """
    if not path.exists():
        return
    tmp = previous.with_name(f".{previous.name}.partial-link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(path, tmp)
    except OSError:  # a file system without hard links
        shutil.copyfile(path, tmp)
    os.replace(tmp, previous)


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as .npz atomically; a full disk is a clear error and the old file stays.

    np.savez streams straight into the temporary file, so the extra memory is
    numpy's write buffer (at most 16 MB per array), not a copy of the whole checkpoint.
    """
    halfway = sum(int(np.asarray(a).nbytes) for a in arrays.values()) // 2
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(_FaultHalfway(f, halfway), **arrays)
    except OSError as e:
        raise UserError(f"could not write checkpoint '{path}' ({e.strerror or e}); training stopped, the previous checkpoint is kept") from None


class _FaultHalfway:
    """A file that calls faults.point("checkpoint") once, after `at` bytes are on disk:
    the SIGKILL tests kill the process in the middle of a checkpoint write."""
    def __init__(self, f, at: int):
        self._f, self._at, self._written, self._fired = f, at, 0, False

    def write(self, data) -> int:
        n = self._f.write(data)
        self._written += len(data)
        if not self._fired and self._written >= self._at:
            self._fired = True
            self._f.flush()
            faults.point("checkpoint")
        return n

    def __getattr__(self, name):  # seek, tell, flush: zipfile needs a seekable file
        return getattr(self._f, name)


def write_history(paths: RunPaths, rows: list[dict]) -> None:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in HISTORY_FIELDS})
    atomic_write_text(paths.history, buf.getvalue())


def variables_arrays(prefix: str, variables) -> dict[str, np.ndarray]:
    return {f"{prefix}{i:05d}": to_numpy(v) for i, v in enumerate(variables)}


@contextmanager
def defer_sigint():
    """Hold Ctrl-C while a checkpoint is written; re-raise it afterwards."""
    caught = []
    try:
        previous = signal.signal(signal.SIGINT, lambda s, f: caught.append(s))
    except ValueError:  # not the main thread: nothing to defer
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


# ------------------------------------------------------------------ reading
def load_checkpoint(paths: RunPaths) -> Checkpoint | None:
    """The run's last.npz, or prev.npz (with a warning) when last.npz is
    damaged; None when the run has no checkpoint yet.

    UserError, naming the file, when neither can be read.
    """
    last, prev = paths.checkpoint, paths.previous_checkpoint
    if not last.exists() and not prev.exists():
        return None
    problems = []
    for path in (last, prev):
        if not path.exists():
            continue
        try:
            ckpt = read_checkpoint(path)
        except UserError as e:
            problems.append(str(e))
            continue
        if path == prev:
            why = problems[0] if problems else f"'{last}' is missing"
            warnings.warn(f"{why}; resuming from the previous checkpoint '{prev}' (epoch {ckpt.state.epochs_done})", stacklevel=2)
        return ckpt
    raise UserError("; ".join(problems) + ("" if prev.exists() else " (no previous checkpoint prev.npz to fall back to)"))


def read_checkpoint(path: Path) -> Checkpoint:
    """One checkpoint file; UserError naming it when it is damaged or foreign."""
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        state = RunState.from_json(str(arrays.pop("state")))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise UserError(f"checkpoint '{path}' is damaged and cannot be read ({type(e).__name__}: {e})") from None
    if state.version != CHECKPOINT_VERSION:
        raise UserError(f"checkpoint '{path}': written by an incompatible resnet-tl version")
    return Checkpoint(state, arrays)


def last_epoch(paths: RunPaths) -> int:
    """Epochs the last checkpoint holds (0 without a readable one)."""
    try:
        with np.load(paths.checkpoint) as z:
            return int(json.loads(str(z["state"]))["epochs_done"])
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
        return 0


def restore_best(paths: RunPaths, classifier) -> bool:
    """Load best.npz into `classifier`; False when there is none."""
    if not paths.best_weights.exists():
        return False
    with np.load(paths.best_weights) as z:
        assign(classifier.variables, {k: z[k] for k in z.files}, "model/", "best weights")
    return True


def assign(variables, arrays: dict, prefix: str, what: str) -> None:
    """Set `variables` from the arrays stored under `prefix`, in order; UserError on any mismatch."""
    keys = sorted(k for k in arrays if k.startswith(prefix))
    if len(keys) != len(variables):
        raise UserError(f"checkpoint: {what} has {len(keys)} arrays but the model has {len(variables)} variables; the checkpoint does not belong to this model")
    for v, k in zip(variables, keys):
        value = arrays[k]
        if tuple(v.shape) != tuple(value.shape):
            raise UserError(f"checkpoint: {what} variable {v.path} has shape {tuple(v.shape)} but the checkpoint holds {value.shape}")
        v.assign(value)


def remove_partials(folder: Path) -> None:
    """Temporary files a killed process left behind (never the real artifacts)."""
    for p in folder.glob(".*.partial-*"):
        p.unlink(missing_ok=True)
