"""The staged training loop: phases, checkpoints, best-model choice, run folder.

`train(recipe, ...)` is the library entry point the CLI calls. Each epoch is
one `fit` call on a compiled model that Keras reuses across calls, which makes
checkpointing, early stopping and resume exact at epoch boundaries:

    for phase in schedule:            # recompile between phases
        freeze / unfreeze stages
        head-only?  -> fit the head on cached backbone features
        otherwise   -> fit augment -> classifier on pixels
        after every epoch: checkpoint (atomic), history.csv, best weights

The checkpoint format and its reading and writing live in `resnet_tl.training.checkpoint`.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from resnet_tl import faults
from resnet_tl.training.checkpoint import (
    Checkpoint, RunState, assign, is_better, last_epoch, load_checkpoint, remove_partials, restore_best, write_epoch,
)
from resnet_tl.data.batches import keras_batches
from resnet_tl.errors import Interrupted, UserError
from resnet_tl.fileio import atomic_path, atomic_write_json, atomic_write_text
from resnet_tl.recipe import Recipe, dump_recipe, load_recipe, locked_view, with_absolute_paths
from resnet_tl.runs import RunPaths, create_run_dir, default_run_name, read_labels, read_status, write_labels, write_status



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

    def to_dict(self) -> dict:
        return {
            "run_dir": str(self.run_dir), "metrics": self.metrics, "best_epoch": self.best_epoch,
            "seconds": round(self.seconds, 2), "precision": self.precision, "backend": self.backend,
            "epochs": len(self.history), "phases": self.phases, "distribution": self.distribution,
        }


# ------------------------------------------------------------ plan/resume
def plan(recipe: Recipe) -> list[dict]:
    """The expanded schedule as rows (for --dry-run); builds no model."""
    from resnet_tl.models.backbones import BACKBONES
    from resnet_tl.training.schedule import describe, expand_schedule

    return describe(expand_schedule(recipe, BACKBONES[recipe.model.backbone].stages))


def resume_recipe(run: str | Path, recipe_arg: str | None, overrides: list[str], data_dir: str | None) -> Recipe:
    """The recipe stored in `run`, refused if edited where it defines the checkpoint."""
    from resnet_tl.runs import open_run

    if recipe_arg or overrides:
        raise UserError("--resume continues with the recipe stored in the run folder; drop the RECIPE argument and --set (edit RUN/recipe.yaml only where it does not change the model or schedule)")
    paths = open_run(run)
    recipe = load_recipe(str(paths.recipe), [], data_dir=data_dir)
    stored = read_status(paths).get("locked")
    if stored is not None:
        now = json.loads(json.dumps(locked_view(recipe)))
        for key, value in stored.items():
            if now.get(key) != value:
                raise UserError(
                    f"{paths.recipe}: '{key}' was edited (run started with {json.dumps(value)}, now {json.dumps(now.get(key))}); "
                    "a resumed run cannot change the model, schedule or data split; start a new run with this recipe instead"
                )
    return recipe


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
    from resnet_tl.globalstate import preserved

    with preserved():
        return _train(recipe, out, name, resume, dataset, progress, cluster)


def _train(recipe, out, name, resume, dataset, progress, cluster) -> TrainResult:
    from resnet_tl.training import precision as precision_mod
    from resnet_tl.runs import check_new_run

    t_start = time.time()
    setup = precision_mod.configure(recipe.train, cluster)
    run_name = name or default_run_name(recipe.name)
    if resume is None and setup.is_chief:
        check_new_run(out, run_name)  # before minutes of decoding, not after
    if dataset is None:
        from resnet_tl.data import load_dataset

        dataset = load_dataset(recipe.data)
    if setup.num_processes > 1 and resume is not None:
        raise UserError("--resume: resuming a multi-worker run is not supported; start a new run")
    if not setup.is_chief:
        return _run_worker(recipe, dataset, setup, t_start)
    paths, state = _open_run(recipe, out, run_name, resume, dataset)
    notify = progress or (lambda event: None)
    try:
        return _run(recipe, paths, state, dataset, setup, notify, t_start)
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
    import shutil
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="resnet-tl-worker-"))
    try:
        paths, state = _open_run(recipe, scratch, "run", None, ds)
        result = _run(recipe, paths, state, ds, setup, lambda event: None, t_start)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.run_dir = None
    return result


def _open_run(recipe: Recipe, out, name, resume, ds) -> tuple[RunPaths, Checkpoint | None]:
    """Create a new run folder or reopen one for --resume; returns its checkpoint state."""
    from resnet_tl.runs import open_run

    if resume is None:
        paths = create_run_dir(out, name)
        # Stored with absolute paths: resume, evaluate and export may run
        # from another folder. locked_view reads the same stored form.
        recipe = with_absolute_paths(recipe)
        atomic_write_text(paths.recipe, dump_recipe(recipe))
        write_labels(paths.labels, list(ds.classes))
        if getattr(ds, "scan", None) is not None:
            from resnet_tl.data.data_report import data_report

            atomic_write_json(paths.data_report, data_report(ds.scan, recipe.data))
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
    import keras

    from resnet_tl.training.augment import build_augmenter
    from resnet_tl.models.backbones import BACKBONES
    from resnet_tl.models.classifier import build_classifier
    from resnet_tl.training.schedule import apply_freezing, expand_schedule

    tc, dc = recipe.train, recipe.data
    n_classes = len(ds.classes)
    phases = expand_schedule(recipe, BACKBONES[recipe.model.backbone].stages)

    keras.utils.set_random_seed(tc.seed)
    with setup.scope():
        classifier = build_classifier(recipe.model, n_classes, dc.image_size)
        augmenter = build_augmenter(dc.augment, dc.image_size, tc.seed)
    state = _restore(ckpt, classifier, augmenter, phases, tc.patience)

    for phase in phases[state.phase:]:
        first_epoch = state.epoch_in_phase if phase.index == state.phase else 0
        if first_epoch == 0:
            state.patience_left = tc.patience  # early stopping counts within a phase
        apply_freezing(classifier, phase)
        notify({"event": "phase", "phase": phase.index, "name": phase.name, "stages": list(phase.stages), "epochs": phase.config.epochs})
        fitter = _PhaseFitter(recipe, phase, classifier, augmenter, ds, setup)
        if first_epoch > 0 and ckpt is not None and ckpt.state.optimizer_phase == phase.index:
            fitter.restore_optimizer(ckpt.arrays)
        for e in range(first_epoch, phase.config.epochs):
            row = fitter.train_one_epoch(e, state.epochs_done + 1, notify)
            stop_phase = _record_epoch(state, row, phase, e, tc)
            write_epoch(paths, state, classifier, augmenter, fitter.optimizer, improved=state.best_epoch == row["epoch"])
            faults.point("epoch")
            notify({"event": "epoch", **row, "improved": state.best_epoch == row["epoch"],
                    "images_per_s": len(ds.y_train) / max(row["seconds"], 1e-9)})
            if stop_phase:
                notify({"event": "early_stop", "phase": phase.name, "epoch": state.epochs_done})
                break

    if setup.num_processes > 1:
        from resnet_tl.training.distribute import local_copy

        classifier = local_copy(classifier, lambda: build_classifier(recipe.model, n_classes, dc.image_size))
    return _finish(recipe, paths, ds, classifier, state, setup, t_start, phases)


def _restore(ckpt: Checkpoint | None, classifier, augmenter, phases, patience: int) -> RunState:
    """The state to start from: fresh, or the checkpoint's with its weights loaded."""
    if ckpt is None:
        return RunState(patience_left=patience)
    assign(classifier.variables, ckpt.arrays, "model/", "model")
    if augmenter is not None:
        assign(augmenter.variables, ckpt.arrays, "augment/", "augmenter")
    state = ckpt.state
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


class _PhaseFitter:
    """One phase's compiled model and its batches: the head on cached features,
    or augmenter -> classifier on pixels. `train_one_epoch` is one `fit` call."""

    def __init__(self, recipe: Recipe, phase, classifier, augmenter, ds, setup):
        import keras

        from resnet_tl.training.augment import build_augmenter, is_identity
        from resnet_tl.models.backbones import BACKBONES
        from resnet_tl.data.batches import class_weights
        from resnet_tl.models.classifier import feature_extractor, head_of
        from resnet_tl.training.schedule import phase_optimizer

        tc, dc, cfg = recipe.train, recipe.data, phase.config
        self.tc, self.phase, self.ds, self.setup = tc, phase, ds, setup
        self.n_classes = len(ds.classes)
        self.class_weight = class_weights(ds.y_train, list(ds.classes), tc.class_weight)
        self.mix = {"mixup": dc.augment.mixup, "cutmix": dc.augment.cutmix} if (dc.augment.mixup or dc.augment.cutmix) else None
        # Multi-worker runs train the head live: cached features would need
        # eager calls on weights that span other processes.
        self.cached = phase.uses_feature_cache and setup.num_processes == 1
        if self.cached:
            extractor = feature_extractor(classifier)
            self.val_inputs = _features(extractor, ds.x_val, tc.batch_size, None)
            # The views' augmenter is seeded by (seed, phase), not taken from the
            # training augmenter's running state: a resumed phase rebuilds the
            # same views.
            view_augmenter = build_augmenter(dc.augment, dc.image_size, tc.seed + 7919 * phase.index) if phase.augmented_views else None
            self.views = [_features(extractor, ds.x_train, tc.batch_size, view_augmenter) for _ in range(phase.cache_views)]
            if not phase.augmented_views and not is_identity(dc.augment):
                warnings.warn(
                    f"phase '{phase.name}': the head trains on cached features of unaugmented images (feature_cache_views: 1) "
                    "although data.augment asks for augmentation; set feature_cache_views > 1 for augmented views, "
                    "or cache_features: false to train on live images", stacklevel=2)
            head = head_of(classifier)
            feat_in = keras.Input(head.input_shape[1:], name="features")
            self.model = keras.Model(feat_in, head(feat_in), name="head_trainer")
        else:
            # Always a wrapper: the classifier itself is never compiled, so
            # model.keras carries no optimizer and loads anywhere.
            with setup.scope():
                inputs = keras.Input((dc.image_size, dc.image_size, 3), name="image")
                x = augmenter(inputs) if augmenter is not None else inputs
                self.model = keras.Model(inputs, classifier(x), name="trainer")
            self.val_inputs = ds.x_val
        self.steps = len(keras_batches(ds.x_train, ds.y_train, self.n_classes, tc.batch_size, 0, True, setup=setup))
        with setup.scope():
            stages = BACKBONES[recipe.model.backbone].stages
            self.optimizer = phase_optimizer(classifier, phase, stages, self.steps)
            self.model.compile(
                optimizer=self.optimizer,
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                # Plain cross-entropy beside the loss: val_loss must mean the same
                # in every phase (best-epoch choice compares across phases), and
                # the loss carries each phase's own label smoothing.
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"), keras.metrics.CategoricalCrossentropy(name="ce")],
                jit_compile=setup.jit_compile,
                steps_per_execution=tc.steps_per_execution,
            )

    def restore_optimizer(self, arrays: dict) -> None:
        self.optimizer.build(self.model.trainable_variables)
        assign(self.optimizer.variables, arrays, "optimizer/", "optimizer")

    def train_one_epoch(self, e: int, epoch_number: int, notify) -> dict:
        """Epoch `e` of this phase (0-based); returns its history row."""
        from resnet_tl.training.schedule import lr_at

        tc, cfg, ds = self.tc, self.phase.config, self.ds
        t0 = time.time()
        x_tr = self.views[e % len(self.views)] if self.cached else ds.x_train
        # A seed per phase: each phase sees its own sequence of epoch orders.
        batches = keras_batches(x_tr, ds.y_train, self.n_classes, tc.batch_size, tc.seed + 7919 * self.phase.index,
                                True, self.class_weight, self.mix, self.setup)
        batches.set_epoch(e)
        val_batches = keras_batches(self.val_inputs, ds.y_val, self.n_classes, tc.batch_size, tc.seed, False, setup=self.setup)
        cb = _EpochNotifier(notify, self.phase, epoch_number, len(batches), tc.batch_size)
        # shuffle=False: our batches are already shuffled per (seed, phase, epoch);
        # Keras would reorder them again with the process-global `random`.
        h = self.model.fit(batches, validation_data=val_batches, epochs=1, verbose=0, callbacks=[cb], shuffle=False)
        logs = {k: float(v[-1]) for k, v in h.history.items()}
        return {
            "phase": self.phase.name, "epoch": epoch_number,
            "lr": float(f"{lr_at((e + 1) * self.steps - 1, self.steps, cfg):.6g}"),
            "loss": logs.get("loss"), "accuracy": logs.get("accuracy"),
            "val_loss": logs.get("val_ce"), "val_accuracy": logs.get("val_accuracy"),
            "seconds": round(time.time() - t0, 3),
        }


def _features(extractor, x, batch_size, augmenter) -> np.ndarray:
    """Pooled backbone features (N, C) float32, optionally of one augmented view."""
    from resnet_tl.formats.predictor import predict_batched

    augment = None if augmenter is None else (lambda xb: np.asarray(augmenter(xb, training=True)))
    return predict_batched(extractor, x, batch_size, augment)


class _EpochNotifier:
    """Minimal Keras callback turning batch ends into progress events."""

    def __new__(cls, notify, phase, epoch, steps, batch_size):
        import keras

        class Notifier(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                faults.point("batch")
                notify({"event": "batch", "phase": phase.name, "epoch": epoch, "step": batch + 1, "steps": steps, "batch_size": batch_size, "loss": float((logs or {}).get("loss", float("nan")))})

        return Notifier()


def _finish(recipe, paths, ds, classifier, state: RunState, setup, t_start, phases) -> TrainResult:
    """Restore the best weights, save model.keras, write metrics.json and
    calibration.json (temperature fitted on the validation split); mark complete."""
    from resnet_tl.inference.calibration import fit_calibration
    from resnet_tl.evaluation.metrics import validation_metrics
    from resnet_tl.formats.predictor import predict_probs
    from resnet_tl.training.schedule import describe

    restore_best(paths, classifier)
    with atomic_path(paths.model) as tmp:
        classifier.save(tmp)
    val_probs = predict_probs(classifier, ds.x_val, recipe.train.batch_size)
    metrics = validation_metrics(ds, val_probs)
    metrics["best_epoch"] = state.best_epoch
    atomic_write_json(paths.metrics, metrics)
    calibration = fit_calibration(val_probs, ds.y_val) if len(ds.y_val) else None
    if calibration is not None:
        atomic_write_json(paths.calibration, calibration)
    write_status(paths, "complete", epochs=len(state.history))
    _write_artifacts(recipe, paths, ds, classifier, state.history, val_probs,
                     calibration["temperature"] if calibration else None)
    return TrainResult(
        run_dir=paths.root, metrics=metrics, history=state.history, best_epoch=state.best_epoch,
        seconds=time.time() - t_start, precision=setup.precision, backend=setup.backend,
        phases=describe(phases), model=classifier,
        distribution={"distribute": setup.distribute, "num_replicas": setup.num_replicas,
                      "process_id": setup.process_id, "num_processes": setup.num_processes},
    )


def _write_artifacts(recipe, paths: RunPaths, ds, classifier, history: list[dict], val_probs, temperature) -> None:
    """plots/curves.png, tensorboard/, eval/val/ and report.html of a finished run.

    A failure of one is a warning, never a failed run: the model and
    metrics.json are already saved when this runs.
    """
    import warnings

    from resnet_tl.evaluation.evaluate import evaluate_in_memory
    from resnet_tl.fileio import atomic_write_bytes
    from resnet_tl.evaluation.plots import plot_curves
    from resnet_tl.evaluation.html_report import TENSORBOARD_DIR, write_report, write_tensorboard

    steps = (
        ("plots/curves.png", lambda: atomic_write_bytes(paths.plots / "curves.png", plot_curves(history))),
        ("tensorboard/", lambda: write_tensorboard(history, paths.root / TENSORBOARD_DIR)),
        ("eval/val/", lambda: evaluate_in_memory(classifier, ds, recipe, paths.root / "eval" / "val",
                                                      probs=val_probs, temperature=temperature)),
        ("report.html", lambda: write_report(paths.root)),
    )
    for what, step in steps:
        try:
            step()
        except Exception as e:  # noqa: BLE001 - reported, and the run stays complete
            warnings.warn(f"{paths.root}: could not write {what} ({type(e).__name__}: {e})", stacklevel=2)
