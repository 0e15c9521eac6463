"""The staged training loop: phases, checkpoints, best-model choice, run folder.

`train(recipe, ...)` is the library entry point the CLI calls. Each epoch is
one `fit` call on a compiled model that Keras reuses across calls, which makes
checkpointing, early stopping and resume exact at epoch boundaries:

    for phase in schedule:            # recompile between phases
        freeze / unfreeze stages
        head-only?  -> fit the head on cached backbone features   (phase.PhaseFitter)
        otherwise   -> fit augment -> classifier on pixels
        after every epoch: checkpoint (atomic), history.csv, best weights
    best weights -> model.keras, metrics, calibration, report  (finish.finish_run)

The checkpoint format and its reading and writing live in `resnet_tl.training.checkpoint`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from resnet_tl import faults
from resnet_tl.data import load_dataset
from resnet_tl.data.data_report import data_report, data_summary
from resnet_tl.errors import Interrupted, UserError
from resnet_tl.fileio import atomic_write_json, atomic_write_text
from resnet_tl.globalstate import preserved
from resnet_tl.kerasenv import keras_module
from resnet_tl.models import weights
from resnet_tl.models.backbones import BACKBONES
from resnet_tl.models.classifier import build_classifier
from resnet_tl.models.fetch import fetch_weights
from resnet_tl.recipe import Recipe, dump_recipe, locked_view
from resnet_tl.runs import (
    RunPaths,
    check_new_run,
    create_run_dir,
    default_run_name,
    open_run,
    read_labels,
    read_status,
    write_labels,
    write_status,
)
from resnet_tl.training import interrupt, precision
from resnet_tl.training.augment import build_augmenter
from resnet_tl.training.checkpoint import (
    Checkpoint,
    RunState,
    assign,
    is_better,
    last_epoch,
    load_checkpoint,
    remove_partials,
    write_epoch,
)
from resnet_tl.training.distribute import local_copy
from resnet_tl.training.ema import WeightEMA
from resnet_tl.training.finish import finish_run
from resnet_tl.training.lr_find import needs_rate_find, record_found_rates, resolve_found_rates
from resnet_tl.training.phase import PhaseFitter
from resnet_tl.training.schedule import describe, expand_schedule
from resnet_tl.training.stages import apply_freezing

keras = keras_module()


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict
    history: list[dict]
    best_epoch: int
    seconds: float
    precision: str
    backend: str
    phases: list[dict] = field(default_factory=list)
    distribution: dict = field(default_factory=dict)  # distribute, num_replicas, process_id, num_processes
    model: Any = None  # the trained classifier (best weights), a keras.Model
    data: dict = field(default_factory=dict)  # data_report.data_summary of the scan (empty for in-memory datasets)
    lr_find: list[dict] = field(default_factory=list)  # the rates lr: find chose (lr_find.json)

    def to_dict(self) -> dict:
        return {
            "run_dir": str(self.run_dir), "metrics": self.metrics, "best_epoch": self.best_epoch,
            "seconds": round(self.seconds, 2), "precision": self.precision, "backend": self.backend,
            "epochs": len(self.history), "phases": self.phases, "distribution": self.distribution, "data": self.data,
            "lr_find": self.lr_find,
        }




# -------------------------------------------------------------------- train
def train(
    recipe: Recipe,
    *,
    out: str | Path = "runs",
    name: str | None = None,
    resume: str | Path | None = None,
    dataset=None,
    progress: Callable[[dict], None] | None = None,
    cluster=None,
) -> TrainResult:
    """Fine-tune per `recipe`; returns the run folder and final validation metrics.

    resume: a run folder to continue from its last checkpoint (its own stored
    recipe is used). dataset: an already loaded `resnet_tl.data.Dataset`
    (tests). progress: called with a dict per event ('phase', 'batch',
    'epoch', 'early_stop') for progress bars. cluster: a
    `resnet_tl.training.distribute.Cluster` for multi-worker training (default: from
    RESNET_TL_* environment variables); only process 0 writes the run
    folder, the others write to a temporary folder they delete.
    The seeds, the Keras dtype policy and distribution are set for the run
    and restored afterwards (`resnet_tl.globalstate.preserved`).
    """
    with preserved():
        return _train(recipe, out, name, resume, dataset, progress, cluster)


def _train(recipe, out, name, resume, dataset, progress, cluster) -> TrainResult:
    t_start = time.time()
    setup = precision.configure(recipe.train, cluster)
    run_name = name or default_run_name(recipe.name)
    if resume is None and setup.is_chief:
        check_new_run(out, run_name)  # before minutes of decoding, not after
    if resume is None or last_epoch(open_run(resume)) == 0:  # a checkpoint holds every weight
        # Downloads (and offline, told in seconds) before the run folder exists: no failed run left behind.
        fetch_weights(recipe.model.weights, recipe.model.backbone)
    if dataset is None:
        dataset = load_dataset(recipe.data)
    if setup.num_processes > 1 and resume is not None:
        raise UserError("--resume: resuming a multi-worker run is not supported; start a new run")
    found = []
    if resume is None and needs_rate_find(recipe):
        # Before the run folder exists: its stored recipe holds the rates used, so a resume trains with them.
        recipe, found = resolve_found_rates(recipe, dataset, progress=progress)
    if not setup.is_chief:
        return _run_worker(recipe, dataset, setup, t_start)
    notify = progress or (lambda event: None)
    summary = data_summary(data_report(dataset.scan, recipe.data)) if getattr(dataset, "scan", None) is not None else {}
    if summary:
        notify({"event": "data", **summary})  # skipped files and warnings on screen, before any epoch
    paths, state = _new_or_resumed_run(recipe, out, run_name, resume, dataset)
    found_rows = record_found_rates(paths.root, found) if found else []
    try:
        with interrupt.deferred():
            result = _run(recipe, paths, state, dataset, setup, notify, t_start)
        result.data = summary
        result.lr_find = found_rows
        return result
    except KeyboardInterrupt:
        epoch = last_epoch(paths)
        write_status(paths, "interrupted", epoch=epoch)
        raise Interrupted(paths.root, epoch) from None
    except UserError:
        write_status(paths, "failed")
        raise
    except Exception as e:
        write_status(paths, "failed", error=f"{type(e).__name__}: {e}")
        raise


def _run_worker(recipe: Recipe, ds, setup, t_start) -> TrainResult:
    """A non-chief process of a multi-worker run: trains in step with the
    chief, writing its files to a temporary folder deleted afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix="resnet-tl-worker-"))
    try:
        paths, state = _new_or_resumed_run(recipe, scratch, "run", None, ds)
        result = _run(recipe, paths, state, ds, setup, lambda event: None, t_start)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.run_dir = None
    return result


def _new_or_resumed_run(recipe: Recipe, out, name, resume, ds) -> tuple[RunPaths, Checkpoint | None]:
    """Create a new run folder or reopen one for --resume; returns its checkpoint state."""
    if resume is None:
        paths = create_run_dir(out, name)
        # Stored with absolute paths: resume, evaluate and export may run
        # from another folder. locked_view reads the same stored form.
        recipe = stored_recipe(recipe)
        atomic_write_text(paths.recipe, dump_recipe(recipe))
        write_labels(paths.labels, list(ds.classes))
        if getattr(ds, "scan", None) is not None:
            atomic_write_json(paths.data_report, data_report(ds.scan, recipe.data))
            if ds.scan.excluded:  # the list as it was used: the file named in the recipe may change later
                atomic_write_text(paths.excluded, "".join(f"{p}\n" for p in ds.scan.excluded))
        write_status(paths, "running", locked=locked_view(recipe))
        return paths, None
    paths = open_run(resume)
    status = read_status(paths).get("status")
    if status == "complete":
        raise UserError(f"run '{paths.root}' is complete; nothing to resume (start a new run instead)")
    labels = read_labels(paths.labels) if paths.labels.exists() else []
    if labels and labels != list(ds.classes):
        raise UserError(f"--resume {paths.root}: the data's classes {list(ds.classes)} differ from the run's labels.txt {labels}")
    try:
        ckpt = load_checkpoint(paths)
    except UserError as e:
        write_status(paths, "failed", error=str(e))
        raise
    remove_partials(paths.checkpoint_dir)
    remove_partials(paths.root)
    write_status(paths, "running", resumed_from_epoch=ckpt.state.epochs_done if ckpt else 0)
    return paths, ckpt


def _run(recipe: Recipe, paths: RunPaths, ckpt: Checkpoint | None, ds, setup, notify, t_start) -> TrainResult:
    """The phase loop: each phase freezes its stages, builds what it fits, trains its epochs."""
    tc, dc = recipe.train, recipe.data
    n_classes = len(ds.classes)
    phases = expand_schedule(recipe, BACKBONES[recipe.model.backbone].stages)

    keras.utils.set_random_seed(tc.seed)
    with setup.scope():
        # Resumed from a checkpoint, which restores every weight: the pretrained ones need no download.
        model_cfg = recipe.model if ckpt is None else recipe.model.model_copy(update={"weights": "none"})
        classifier = build_classifier(model_cfg, n_classes, dc.image_size)
        augmenter = build_augmenter(dc.augment, dc.image_size, tc.seed)
        ema = WeightEMA(classifier, tc.ema) if tc.ema else None
    state = _restore(ckpt, classifier, augmenter, phases, tc.patience, ema)

    for phase in phases[state.phase:]:
        first_epoch = state.epoch_in_phase if phase.index == state.phase else 0
        if first_epoch == 0:
            state.patience_left = tc.patience  # early stopping counts within a phase
        apply_freezing(classifier, phase)
        notify({"event": "phase", "phase": phase.index, "name": phase.name, "stages": list(phase.stages), "epochs": phase.config.epochs})
        fitter = PhaseFitter(recipe, phase, classifier, augmenter, ds, setup, ema)
        if first_epoch > 0 and ckpt is not None and ckpt.state.optimizer_phase == phase.index:
            fitter.restore_optimizer(ckpt.arrays)
        for e in range(first_epoch, phase.config.epochs):
            row = fitter.train_one_epoch(e, state.epochs_done + 1, notify)
            stop_phase = _record_epoch(state, row, phase, e, tc)
            state.ema_updates = ema.updates if ema is not None else 0
            write_epoch(paths, state, classifier, augmenter, fitter.optimizer, improved=state.best_epoch == row["epoch"], ema=ema)
            faults.point("epoch")
            interrupt.check()
            notify({"event": "epoch", **row, "improved": state.best_epoch == row["epoch"],
                    "images_per_s": len(ds.y_train) / max(row["seconds"], 1e-9)})
            if stop_phase:
                notify({"event": "early_stop", "phase": phase.name, "epoch": state.epochs_done})
                break

    if setup.num_processes > 1:
        classifier = local_copy(classifier, lambda: build_classifier(recipe.model, n_classes, dc.image_size))
    metrics = finish_run(recipe, paths, ds, classifier, state)
    return TrainResult(
        run_dir=paths.root, metrics=metrics, history=state.history, best_epoch=state.best_epoch,
        seconds=time.time() - t_start, precision=setup.precision, backend=setup.backend,
        phases=describe(phases), model=classifier,
        distribution={"distribute": setup.distribute, "num_replicas": setup.num_replicas,
                      "process_id": setup.process_id, "num_processes": setup.num_processes},
    )


def _restore(ckpt: Checkpoint | None, classifier, augmenter, phases, patience: int, ema=None) -> RunState:
    """The state to start from: fresh, or the checkpoint's with its weights (and their average) loaded."""
    if ckpt is None:
        return RunState(patience_left=patience)
    assign(classifier.variables, ckpt.arrays, "model/", "model")
    if augmenter is not None:
        assign(augmenter.variables, ckpt.arrays, "augment/", "augmenter")
    state = ckpt.state
    if ema is not None:
        assign(ema.variables, ckpt.arrays, "ema/", "weights' average (train.ema)")
        ema.updates = state.ema_updates
    if state.patience_left is None:
        state.patience_left = patience
    if state.epoch_in_phase >= phases[state.phase].config.epochs:
        state.phase, state.epoch_in_phase = state.phase + 1, 0
    return state


def _record_epoch(state: RunState, row: dict, phase, e: int, tc) -> bool:
    """Add the epoch to `state` (history, best, patience); True when the phase stops early."""
    state.epochs_done += 1
    state.history.append(row)
    if is_better(tc.monitor, row[tc.monitor], state.best_value):
        state.best_value, state.best_epoch = row[tc.monitor], state.epochs_done
        state.patience_left = tc.patience
    else:
        state.patience_left -= 1
    stop_phase = bool(tc.patience) and state.patience_left <= 0
    state.phase = phase.index
    # An early-stopped phase is finished: a resume goes on with the next one.
    state.epoch_in_phase = phase.config.epochs if stop_phase else e + 1
    state.optimizer_phase = phase.index
    return stop_phase


def stored_recipe(recipe: Recipe) -> Recipe:
    """`recipe` as a run folder stores it: data.dir, data.cache_dir, data.exclude and a
    model.weights file made absolute (against the current folder)."""
    data = {"dir": str(Path(recipe.data.dir).expanduser().resolve())}
    for key in ("cache_dir", "exclude"):
        if getattr(recipe.data, key) is not None:
            data[key] = str(Path(getattr(recipe.data, key)).expanduser().resolve())
    model = recipe.model.model_copy(update={"weights": weights.absolute(recipe.model.weights)})
    return recipe.model_copy(update={"data": recipe.data.model_copy(update=data), "model": model})
