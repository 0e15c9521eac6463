"""lr-find: Smith's learning-rate range test (fastai's `lr_find`) on one phase of a recipe.

The phase starts where a real run would start it: earlier phases train first, with the
run's seeds. Then its trainable stages take `steps` optimizer steps with the rate rising
exponentially from `start_lr` to `end_lr` (lr_i = start_lr * (end_lr / start_lr) ** (i / (steps - 1))),
its own optimizer, per-stage rates and weight decay otherwise; the loss of every batch is
recorded, smoothed as fastai does (a debiased moving average, beta 0.98), and the test stops
early once the smoothed loss passes 4x its minimum after the first tenth of the steps (divergence).

The suggestion follows one stated rule, fastai's `steep`:
    RULE: the rate of steepest descent of the smoothed loss against log(lr), over the points
    left after dropping the first tenth of the steps and the last 5 points, up to the lowest
    smoothed loss. The last clause is ours: with BatchNorm a loss may spike, not reach 4x its
    minimum, and fall again at absurd rates; that fall is not the descent the rule looks for.
`min_div_10` (fastai's `minimum`: the rate of the lowest smoothed loss, divided by 10) is
reported beside it.

`--set schedule.N.lr=find` (`resolve_found_rates`) runs this for that phase before the real run
and trains with the suggestion; the run folder records the rule and the value (lr_find.json).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from resnet_tl.data import load_dataset
from resnet_tl.errors import UserError
from resnet_tl.evaluation.plots import plot_lr_find
from resnet_tl.fileio import atomic_write_bytes, atomic_write_json
from resnet_tl.globalstate import preserved
from resnet_tl.kerasenv import keras_module
from resnet_tl.models.backbones import BACKBONES
from resnet_tl.models.classifier import build_classifier
from resnet_tl.recipe import PhaseConfig, Recipe
from resnet_tl.training import precision
from resnet_tl.training.augment import build_augmenter
from resnet_tl.training.phase import PhaseFitter
from resnet_tl.training.schedule import expand_schedule
from resnet_tl.training.stages import apply_freezing

keras = keras_module()

RULE = ("steepest descent of the smoothed loss against log(lr) before its minimum, "
        "after dropping the first tenth of the steps and the last 5 points (fastai's 'steep')")
START_LR, END_LR, STEPS = 1e-7, 10.0, 100
SMOOTH_BETA, DIVERGE = 0.98, 4.0


@dataclass
class LRFind:
    """A range test's result: per step its rate, raw and smoothed loss; the suggestion by RULE."""
    phase: int
    name: str
    stages: list[str]
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    min_div_10: float
    stopped_early: bool
    rule: str = RULE

    def to_dict(self) -> dict:
        return asdict(self)


def smooth(losses) -> np.ndarray:
    """fastai's Recorder smoothing: avg_i = beta * avg_{i-1} + (1 - beta) * loss_i, divided by 1 - beta^(i+1)."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = SMOOTH_BETA * avg + (1 - SMOOTH_BETA) * float(loss)
        out.append(avg / (1 - SMOOTH_BETA ** (i + 1)))
    return np.array(out)


def suggest(lrs, smoothed, steps: int) -> tuple[float, float]:
    """(suggestion by RULE, min_div_10) from the rates and smoothed losses of a range test of `steps` steps."""
    lrs, smoothed = np.asarray(lrs, float), np.asarray(smoothed, float)
    kept = slice(steps // 10, len(lrs) - 5)
    lr, loss = lrs[kept], smoothed[kept]
    if len(lr) < 3:
        raise UserError(f"lr-find: the loss diverged after {len(lrs)} of {steps} steps, too early to suggest a rate; "
                        f"allowed: a lower start rate or more steps (--steps)")
    lowest = int(np.argmin(loss))
    if lowest < 1:
        raise UserError(f"lr-find: the smoothed loss never fell below its value at lr {lr[0]:.3g}; "
                        f"allowed: a lower start rate, more steps (--steps), or check the phase trains anything")
    descent = slice(0, lowest + 1)
    slopes = np.diff(loss[descent]) / np.diff(np.log(lr[descent]))
    return float(lr[int(np.argmin(slopes))]), float(lr[lowest] / 10)


def exponential_rates(start_lr: float, end_lr: float, steps: int):
    """A Keras LearningRateSchedule: start_lr at step 0 rising exponentially to end_lr at step steps - 1."""
    from keras import ops

    class RangeTest(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return start_lr * ops.power(end_lr / start_lr, ops.cast(step, "float32") / max(1, steps - 1))

        def get_config(self):
            return {}

    return RangeTest()


def range_test(model, batch_at, steps: int):
    """Train `model` (compiled with `exponential_rates(...)`) for up to `steps` batches,
    batch_at(i) -> (x, y[, sample_weight]); returns (lrs, losses, smoothed, stopped_early)."""
    lrs, losses = [], []
    best = np.inf
    for i in range(steps):
        lrs.append(float(np.asarray(model.optimizer.learning_rate)))  # the rate this step applies
        logs = model.train_on_batch(*batch_at(i), return_dict=True)
        losses.append(float(logs["loss"]))
        smoothed = smooth(losses)
        if not np.isfinite(smoothed[-1]):
            return lrs, losses, smoothed, True
        if i < steps // 10:  # the first tenth is dropped by the rule: its noise neither sets nor trips the stop
            continue
        if smoothed[-1] > DIVERGE * best:
            return lrs, losses, smoothed, True
        best = min(best, smoothed[-1])
    return lrs, losses, smooth(losses), False


def lr_find(recipe: Recipe, phase: int = 0, dataset=None, steps: int = STEPS,
            start_lr: float = START_LR, end_lr: float = END_LR, progress=None) -> LRFind:
    """The range test of `phase` (an index of the expanded schedule) from that phase's own start.

    Earlier phases train first (their `lr: find` resolved in order); progress: called with a
    dict per event, as in `train`.
    """
    with preserved():
        setup = precision.configure(recipe.train, None)
        ds = dataset if dataset is not None else load_dataset(recipe.data)
        recipe, _ = resolve_found_rates(recipe, ds, before=phase)
        phases = expand_schedule(recipe, BACKBONES[recipe.model.backbone].stages)
        if not 0 <= phase < len(phases):
            raise UserError(f"--phase: received {phase}; allowed: 0..{len(phases) - 1} (the recipe's expanded schedule)")
        tc, dc = recipe.train, recipe.data
        notify = progress or (lambda event: None)
        keras.utils.set_random_seed(tc.seed)  # as `train` seeds: earlier phases end where a run's do
        with setup.scope():
            classifier = build_classifier(recipe.model, len(ds.classes), dc.image_size)
            augmenter = build_augmenter(dc.augment, dc.image_size, tc.seed)
        epochs_done = 0
        for earlier in phases[:phase]:
            apply_freezing(classifier, earlier)
            fitter = PhaseFitter(recipe, earlier, classifier, augmenter, ds, setup)
            for e in range(earlier.config.epochs):
                epochs_done += 1
                row = fitter.train_one_epoch(e, epochs_done, notify)
                notify({"event": "epoch", **row, "images_per_s": len(ds.y_train) / max(row["seconds"], 1e-9)})
        target = phases[phase]
        apply_freezing(classifier, target)
        fitter = PhaseFitter(recipe, target, classifier, augmenter, ds, setup,
                             learning_rate=exponential_rates(start_lr, end_lr, steps))
        epoch_batches = {}

        def batch_at(i):
            e, j = divmod(i, fitter.steps)
            if e not in epoch_batches:
                epoch_batches.clear()
                epoch_batches[e] = fitter.epoch_batches(e)
            return epoch_batches[e][j]

        lrs, losses, smoothed, stopped = range_test(fitter.model, batch_at, steps)
        suggestion, min10 = suggest(lrs, smoothed, steps)
        return LRFind(target.index, target.name, list(target.stages), lrs, losses, [float(s) for s in smoothed],
                      suggestion, min10, stopped)


def write_plot(result: LRFind, path) -> None:
    """lr_find.png: loss against lr (log x), raw and smoothed, the suggestion and min/10 marked."""
    atomic_write_bytes(path, plot_lr_find(result.lrs, result.losses, result.smoothed, result.suggestion,
                                          result.min_div_10, f"lr-find: phase {result.phase} '{result.name}'"))


def resolve_found_rates(recipe: Recipe, ds, before: int | None = None, progress=None) -> tuple[Recipe, list[LRFind]]:
    """`recipe` with every `lr: find` of a plain phase (below expanded phase `before`, if given)
    replaced by lr-find's suggestion, in schedule order; and those range tests."""
    found: list[LRFind] = []
    while True:
        phases = expand_schedule(recipe, BACKBONES[recipe.model.backbone].stages)
        todo = [p for p in phases if p.config.lr == "find" and (before is None or p.index < before)]
        if not todo:
            return recipe, found
        p = todo[0]
        result = lr_find(recipe, p.index, ds, progress=progress)
        found.append(result)
        schedule = list(recipe.schedule)
        schedule[p.item] = schedule[p.item].model_copy(update={"lr": float(f"{result.suggestion:.3g}")})
        recipe = recipe.model_copy(update={"schedule": schedule})


def needs_rate_find(recipe: Recipe) -> bool:
    return any(isinstance(item, PhaseConfig) and item.lr == "find" for item in recipe.schedule)


def record_found_rates(root, found: list[LRFind]) -> list[dict]:
    """Write a run's lr_find.json (per phase: the rule, the rate used, min/10) and
    plots/lr_find_phase<N>.png; returns lr_find.json's rows."""
    rows = [{"phase": r.phase, "name": r.name, "rule": r.rule, "lr": float(f"{r.suggestion:.3g}"),
             "suggestion": r.suggestion, "min_div_10": r.min_div_10, "steps": len(r.lrs)} for r in found]
    atomic_write_json(Path(root) / "lr_find.json", rows)
    for r in found:
        write_plot(r, Path(root) / "plots" / f"lr_find_phase{r.phase}.png")
    return rows
