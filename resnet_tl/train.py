"""The staged training loop: phases, checkpoints, best-model choice, run folder.

`train(recipe, ...)` is the library entry point the CLI calls. Each epoch is
one `fit` call on a compiled model that Keras reuses across calls, which makes
checkpointing, early stopping and resume exact at epoch boundaries:

    for phase in schedule:            # recompile between phases
        freeze / unfreeze stages
        head-only?  -> fit the head on cached backbone features
        otherwise   -> fit augment -> classifier on pixels
        after every epoch: checkpoint (atomic), history.csv, best weights
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from resnet_tl import faults
from resnet_tl.errors import Interrupted, UserError
from resnet_tl.io import atomic_path, atomic_write_json, atomic_write_text
from resnet_tl.recipe import Recipe, dump_recipe, load_recipe, locked_view
from resnet_tl.runs import RunPaths, create_run_dir, default_run_name, read_status, write_status

HISTORY_FIELDS = ("phase", "epoch", "lr", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")
CHECKPOINT_VERSION = 1


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

    def to_dict(self) -> dict:
        return {
            "run_dir": str(self.run_dir), "metrics": self.metrics, "best_epoch": self.best_epoch,
            "seconds": round(self.seconds, 2), "precision": self.precision, "backend": self.backend,
            "epochs": len(self.history), "phases": self.phases,
        }


# ---------------------------------------------------------------- batches
def _make_batches(x, y, n_classes, batch_size, seed, shuffle, class_weight=None, mix=None, setup=None):
    """A Keras PyDataset of (pixels or features float32, one-hot labels[, sample weights]).

    Labels are one-hot so label smoothing, mixup and cutmix share one loss.
    With a distributed `setup`, this process reads its own shard, in steps of
    its part of the global `batch_size`; training drops a last partial batch
    so that every step splits evenly across devices.
    """
    import keras

    from resnet_tl.data.batches import ArrayBatches

    mix = mix or {}
    shard = {}
    if setup is not None and setup.num_replicas > 1:
        shard = dict(batch_size=setup.process_batch_size(batch_size), shard_index=setup.process_id,
                     num_shards=setup.num_processes, drop_remainder=shuffle)
    batches = ArrayBatches(
        x, y, **{"batch_size": batch_size, **shard}, shuffle=shuffle, seed=seed, class_weight=class_weight,
        mixup=mix.get("mixup", 0.0), cutmix=mix.get("cutmix", 0.0), num_classes=n_classes,
    )
    eye = np.eye(n_classes, dtype=np.float32)

    class OneHot(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)

        def __len__(self):
            return len(batches)

        def __getitem__(self, i):
            item = batches[i]
            yb = item[1]
            if yb.ndim == 1:
                yb = eye[yb]
            return (item[0], yb, *item[2:])

        def set_epoch(self, epoch):
            batches.set_epoch(epoch)

    return OneHot()


# ------------------------------------------------------------- checkpoints
@contextmanager
def _defer_sigint():
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


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays atomically; a full disk is a clear error and the old file stays."""
    buf = _io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                faults.point("checkpoint")
                f.write(data[len(data) // 2:])
    except OSError as e:
        raise UserError(f"could not write checkpoint '{path}' ({e.strerror or e}); training stopped, the previous checkpoint is kept") from None


def _remove_partials(folder: Path) -> None:
    """Temporary files a killed process left behind (never the real artifacts)."""
    for p in folder.glob(".*.partial-*"):
        p.unlink(missing_ok=True)


def _variables_arrays(prefix: str, variables) -> dict[str, np.ndarray]:
    from resnet_tl.distribute import to_numpy

    return {f"{prefix}{i:05d}": to_numpy(v) for i, v in enumerate(variables)}


def _assign(variables, arrays: dict, prefix: str, what: str) -> None:
    keys = sorted(k for k in arrays if k.startswith(prefix))
    if len(keys) != len(variables):
        raise UserError(f"checkpoint: {what} has {len(keys)} arrays but the model has {len(variables)} variables; the checkpoint does not belong to this model")
    for v, k in zip(variables, keys):
        value = arrays[k]
        if tuple(v.shape) != tuple(value.shape):
            raise UserError(f"checkpoint: {what} variable {v.path} has shape {tuple(v.shape)} but the checkpoint holds {value.shape}")
        v.assign(value)


# ------------------------------------------------------------------ history
def _write_history(paths: RunPaths, rows: list[dict]) -> None:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in HISTORY_FIELDS})
    atomic_write_text(paths.history, buf.getvalue())


def _better(monitor: str, value: float, best: float | None) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value > best if monitor == "val_accuracy" else value < best


# ------------------------------------------------------------ plan/resume
def plan(recipe: Recipe) -> list[dict]:
    """The expanded schedule as rows (for --dry-run); builds no model."""
    from resnet_tl.backbones import BACKBONES
    from resnet_tl.schedule import describe, expand_schedule

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
    `resnet_tl.distribute.Cluster` for multi-worker training (default: from
    RESNET_TL_* environment variables); only process 0 writes the run
    folder, the others write to a temporary folder they delete.
    The global Keras dtype policy is set for the run and restored afterwards.
    """
    from resnet_tl.kerasenv import keras_module

    keras = keras_module()
    previous = keras.config.dtype_policy()
    try:
        return _train(recipe, out, name, resume, dataset, progress, cluster)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def _train(recipe, out, name, resume, dataset, progress, cluster) -> TrainResult:
    from resnet_tl import precision as precision_mod
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
        epoch = _last_epoch(paths)
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


def _last_epoch(paths: RunPaths) -> int:
    try:
        with np.load(paths.checkpoint) as z:
            return int(json.loads(str(z["state"]))["epochs_done"])
    except (OSError, KeyError, ValueError):
        return 0


def _open_run(recipe: Recipe, out, name, resume, ds) -> tuple[RunPaths, dict | None]:
    """Create a new run folder or reopen one for --resume; returns its checkpoint state."""
    from resnet_tl.runs import open_run

    if resume is None:
        paths = create_run_dir(out, name)
        atomic_write_text(paths.recipe, dump_recipe(recipe))
        atomic_write_text(paths.labels, "\n".join(ds.classes) + "\n")
        if getattr(ds, "scan", None) is not None:
            from resnet_tl.data.report import data_report

            atomic_write_json(paths.data_report, data_report(ds.scan, recipe.data))
        write_status(paths, "running", locked=locked_view(recipe))
        return paths, None
    paths = open_run(resume)
    status = read_status(paths).get("status")
    if status == "complete":
        raise UserError(f"run '{paths.root}' is complete; nothing to resume (start a new run instead)")
    labels = paths.labels.read_text().split("\n")[:-1] if paths.labels.exists() else []
    if labels and labels != list(ds.classes):
        raise UserError(f"--resume {paths.root}: the data's classes {list(ds.classes)} differ from the run's labels.txt {labels}")
    state = None
    if paths.checkpoint.exists():
        with np.load(paths.checkpoint) as z:
            arrays = {k: z[k] for k in z.files}
        state = json.loads(str(arrays.pop("state")))
        state["arrays"] = arrays
        if state.get("version") != CHECKPOINT_VERSION:
            raise UserError(f"checkpoint '{paths.checkpoint}': written by an incompatible resnet-tl version")
    _remove_partials(paths.checkpoint_dir)
    _remove_partials(paths.root)
    write_status(paths, "running", resumed_from_epoch=(state or {}).get("epochs_done", 0))
    return paths, state


def _run(recipe: Recipe, paths: RunPaths, state, ds, setup, notify, t_start) -> TrainResult:
    import keras

    from resnet_tl.augment import build_augmenter
    from resnet_tl.backbones import BACKBONES
    from resnet_tl.data.batches import class_weights as make_class_weights
    from resnet_tl.model import build_classifier, feature_extractor, parts
    from resnet_tl.schedule import apply_freezing, expand_schedule, lr_at, lr_multipliers, make_optimizer

    tc, dc = recipe.train, recipe.data
    classes = list(ds.classes)
    n_classes = len(classes)
    spec = BACKBONES[recipe.model.backbone]
    phases = expand_schedule(recipe, spec.stages)

    keras.utils.set_random_seed(tc.seed)
    with setup.scope():
        classifier = build_classifier(recipe.model, n_classes, dc.image_size)
        augmenter = build_augmenter(dc.augment, dc.image_size, tc.seed)
    _, head = parts(classifier)

    history: list[dict] = []
    best_value: float | None = None
    best_epoch = 0
    start_phase, start_epoch_in_phase = 0, 0
    epochs_done = 0
    patience_left = tc.patience
    if state is not None:
        arrays = state["arrays"]
        _assign(classifier.variables, arrays, "model/", "model")
        if augmenter is not None:
            _assign(augmenter.variables, arrays, "augment/", "augmenter")
        history = state["history"]
        best_value, best_epoch = state["best_value"], state["best_epoch"]
        start_phase, start_epoch_in_phase = state["phase"], state["epoch_in_phase"]
        epochs_done = state["epochs_done"]
        patience_left = state.get("patience_left", tc.patience)
        if start_epoch_in_phase >= phases[start_phase].config.epochs:
            start_phase, start_epoch_in_phase = start_phase + 1, 0

    class_weight = make_class_weights(ds.y_train, classes, tc.class_weight)
    mix = None
    if dc.augment.mixup or dc.augment.cutmix:
        mix = {"mixup": dc.augment.mixup, "cutmix": dc.augment.cutmix}

    for phase in phases[start_phase:]:
        cfg = phase.config
        apply_freezing(classifier, phase)
        first_epoch = start_epoch_in_phase if phase.index == start_phase else 0
        if first_epoch == 0:
            patience_left = tc.patience  # early stopping counts within a phase
        notify({"event": "phase", "phase": phase.index, "name": phase.name, "stages": list(phase.stages), "epochs": cfg.epochs})
        # Multi-worker runs train the head live: cached features would need
        # eager calls on weights that span other processes.
        cached = phase.uses_feature_cache and setup.num_processes == 1
        if cached:
            extractor = feature_extractor(classifier)
            feats_val = _features(extractor, ds.x_val, tc.batch_size, None)
            views = [
                _features(extractor, ds.x_train, tc.batch_size, augmenter if cfg.feature_cache_views > 1 else None)
                for v in range(cfg.feature_cache_views)
            ]
            feat_in = keras.Input(head.input_shape[1:], name="features")
            fit_model = keras.Model(feat_in, head(feat_in), name="head_trainer")
        else:
            # Always a wrapper: the classifier itself is never compiled, so
            # model.keras carries no optimizer and loads anywhere.
            with setup.scope():
                inputs = keras.Input((dc.image_size, dc.image_size, 3), name="image")
                x = augmenter(inputs) if augmenter is not None else inputs
                fit_model = keras.Model(inputs, classifier(x), name="trainer")
        steps = len(_make_batches(ds.x_train, ds.y_train, n_classes, tc.batch_size, 0, True, setup=setup))
        with setup.scope():
            optimizer = make_optimizer(cfg, steps, lr_multipliers(classifier, phase, spec.stages))
            fit_model.compile(
                optimizer=optimizer,
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                jit_compile=setup.jit_compile,
                steps_per_execution=tc.steps_per_execution,
            )
        if first_epoch > 0 and state is not None and state.get("optimizer_phase") == phase.index:
            fit_model.optimizer.build(fit_model.trainable_variables)
            _assign(fit_model.optimizer.variables, state["arrays"], "optimizer/", "optimizer")

        for e in range(first_epoch, cfg.epochs):
            t0 = time.time()
            if cached:
                x_tr = views[e % len(views)]
                x_va = feats_val
            else:
                x_tr, x_va = ds.x_train, ds.x_val
            # A seed per phase: each phase sees its own sequence of epoch orders.
            batches = _make_batches(x_tr, ds.y_train, n_classes, tc.batch_size, tc.seed + 7919 * phase.index, True, class_weight, mix, setup)
            batches.set_epoch(e)
            val_batches = _make_batches(x_va, ds.y_val, n_classes, tc.batch_size, tc.seed, False, setup=setup)
            cb = _EpochNotifier(notify, phase, epochs_done + 1, len(batches), tc.batch_size)
            # shuffle=False: our batches are already shuffled per (seed, phase, epoch);
            # Keras would reorder them again with the process-global `random`.
            h = fit_model.fit(batches, validation_data=val_batches, epochs=1, verbose=0, callbacks=[cb], shuffle=False)
            logs = {k: float(v[-1]) for k, v in h.history.items()}
            epochs_done += 1
            row = {
                "phase": phase.name, "epoch": epochs_done,
                "lr": float(f"{lr_at((e + 1) * steps - 1, steps, cfg):.6g}"),
                "loss": logs.get("loss"), "accuracy": logs.get("accuracy"),
                "val_loss": logs.get("val_loss"), "val_accuracy": logs.get("val_accuracy"),
                "seconds": round(time.time() - t0, 3),
            }
            history.append(row)
            value = row[tc.monitor]
            improved = _better(tc.monitor, value, best_value)
            if improved:
                best_value, best_epoch = value, epochs_done
                patience_left = tc.patience
            else:
                patience_left -= 1
            stop_phase = bool(tc.patience) and patience_left <= 0
            ck_state = {
                "version": CHECKPOINT_VERSION, "phase": phase.index,
                # An early-stopped phase is finished: a resume goes on with the next one.
                "epoch_in_phase": cfg.epochs if stop_phase else e + 1,
                "optimizer_phase": phase.index, "epochs_done": epochs_done, "history": history,
                "best_value": best_value, "best_epoch": best_epoch, "patience_left": patience_left,
            }
            _write_epoch(paths, ck_state, classifier, augmenter, fit_model.optimizer, improved)
            faults.point("epoch")
            notify({"event": "epoch", **row, "improved": improved, "images_per_s": len(ds.y_train) / max(row["seconds"], 1e-9)})
            if stop_phase:
                notify({"event": "early_stop", "phase": phase.name, "epoch": epochs_done})
                break
        start_epoch_in_phase = 0

    if setup.num_processes > 1:
        from resnet_tl.distribute import local_copy

        classifier = local_copy(classifier, lambda: build_classifier(recipe.model, n_classes, dc.image_size))
    return _finish(recipe, paths, ds, classifier, history, best_epoch, setup, t_start, phases)


def _write_epoch(paths: RunPaths, ck_state: dict, classifier, augmenter, optimizer, improved: bool) -> None:
    """Best weights (if improved), then the checkpoint, then history.csv; Ctrl-C waits."""
    with _defer_sigint():
        if improved:
            _save_npz(paths.best_weights, _variables_arrays("model/", classifier.variables))
        arrays = _variables_arrays("model/", classifier.variables)
        if augmenter is not None:
            arrays.update(_variables_arrays("augment/", augmenter.variables))
        arrays.update(_variables_arrays("optimizer/", optimizer.variables))
        arrays["state"] = np.array(json.dumps(ck_state))
        _save_npz(paths.checkpoint, arrays)
        _write_history(paths, ck_state["history"])


def _features(extractor, x, batch_size, augmenter) -> np.ndarray:
    """Pooled backbone features (N, C) float32, optionally of one augmented view."""
    from resnet_tl.evaluate import predict_batched

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


def _finish(recipe, paths, ds, classifier, history, best_epoch, setup, t_start, phases) -> TrainResult:
    """Restore the best weights, save model.keras, write metrics.json; mark complete."""
    from resnet_tl.evaluate import predict_probs, validation_metrics

    if paths.best_weights.exists():
        with np.load(paths.best_weights) as z:
            _assign(classifier.variables, {k: z[k] for k in z.files}, "model/", "best weights")
    with atomic_path(paths.model) as tmp:
        classifier.save(tmp)
    val_probs = predict_probs(classifier, ds.x_val, recipe.train.batch_size)
    metrics = validation_metrics(classifier, ds, recipe.train.batch_size, probs=val_probs)
    metrics["best_epoch"] = best_epoch
    atomic_write_json(paths.metrics, metrics)
    write_status(paths, "complete", epochs=len(history))
    from resnet_tl.report import after_training

    after_training(recipe, paths, ds, classifier, history, val_probs)  # curves, tensorboard/, eval/val/, report.html
    from resnet_tl.schedule import describe

    return TrainResult(
        run_dir=paths.root, metrics=metrics, history=history, best_epoch=best_epoch,
        seconds=time.time() - t_start, precision=setup.precision, backend=setup.backend,
        phases=describe(phases),
    )
