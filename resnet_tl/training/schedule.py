"""Freeze/unfreeze schedules as data: phase expansion, stage selection, the feature
cache of head-only phases and the learning-rate curve of a phase. What these mean
for a Keras model (freezing, per-stage rates, the optimizer) is `resnet_tl.training.stages`.

Stages are named as Keras names them: ``stem``, ``conv2`` .. ``conv5`` (CIFAR
ResNets stop at ``conv4``), then ``head``. Depth below the head counts from
the head: head = 0, the last backbone stage = 1, ... stem = len(stages).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from resnet_tl.errors import UserError
from resnet_tl.models.backbones import BACKBONES
from resnet_tl.models.weights import parse_weights
from resnet_tl.recipe import AugmentConfig, GradualPhase, PhaseConfig, Recipe
from resnet_tl.training.augment import is_identity


@dataclass(frozen=True)
class Phase:
    """A resolved phase: an expanded schedule entry with its stage set."""
    index: int
    name: str
    config: PhaseConfig
    stages: tuple[str, ...]  # stages that train, bottom to top
    cache_views: int = 0  # views of the training set in the feature cache; 0 = trains on live images
    augmented_views: bool = False  # whether those views are augmented
    item: int = 0  # the recipe's schedule entry it came from (a `gradual` entry expands to several phases)

    @property
    def uses_feature_cache(self) -> bool:
        """Whether the head trains on cached backbone features (see `feature_cache`)."""
        return self.cache_views > 0


AUTO_CACHE_VIEWS = 4  # augmented views cached by default: 4 forward passes instead of one per epoch


def feature_cache(cfg: PhaseConfig, stages: tuple[str, ...], augment: AugmentConfig, where: str) -> tuple[int, bool]:
    """(views, augmented) of a phase's feature cache; (0, False) when it trains on live images.

    Only head-only phases cache, and not with mixup or CutMix: those mix
    images (and their labels), and a mix of two images' features is not the
    features of a mixed image, so such a phase trains live. When the recipe
    augments, the cache holds `feature_cache_views` augmented views (default
    min(epochs, 4)), one per epoch in turn; without augmentation, one view.
    """
    if stages != ("head",) or cfg.cache_features is False:
        return 0, False
    if augment.mixup > 0 or augment.cutmix > 0:
        if cfg.cache_features:
            raise UserError(
                f"{where}.cache_features: received true with data.augment mixup={augment.mixup:g}, cutmix={augment.cutmix:g}; "
                "mixup and CutMix mix images, not backbone features; allowed: false or unset (the phase then trains on live images)"
            )
        return 0, False
    if is_identity(augment):
        return 1, False
    if cfg.feature_cache_views is None:
        return min(cfg.epochs, AUTO_CACHE_VIEWS), True
    # An explicit 1 keeps its documented meaning: one unaugmented view.
    return cfg.feature_cache_views, cfg.feature_cache_views > 1


def all_stages(backbone_stages: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(backbone_stages) + ("head",)


def _expand_gradual(g, stages: tuple[str, ...], where: str) -> list[PhaseConfig]:
    full = all_stages(stages)
    for key in ("start", "stop"):
        value = getattr(g, key)
        if value not in stages:
            raise UserError(f"{where}.gradual.{key}: received {value!r}; allowed: {', '.join(stages)}")
    i_start, i_stop = full.index(g.start), full.index(g.stop)
    if i_stop > i_start:
        raise UserError(f"{where}.gradual: stop {g.stop!r} is above start {g.start!r}; unfreezing goes downwards (e.g. start: conv5, stop: conv2)")
    phases = []
    common = dict(optimizer=g.optimizer, decay=g.decay, batchnorm=g.batchnorm)
    if g.head_epochs:
        phases.append(PhaseConfig(name="head", epochs=g.head_epochs, train="head", lr=g.head_lr, **common))
    for i in range(i_start, i_stop - 1, -1):
        phases.append(PhaseConfig(
            name=f"from_{full[i]}", epochs=g.epochs_per_stage, **{"from": full[i]}, lr=g.lr,
            lr_decay_per_stage=g.lr_decay_per_stage, **common,
        ))
    return phases


def select_stages(phase: PhaseConfig, stages: tuple[str, ...], where: str) -> tuple[str, ...]:
    """Stages that train in `phase`, in bottom-to-top order."""
    full = all_stages(stages)
    if phase.from_ is not None:
        if phase.from_ not in full:
            raise UserError(f"{where}.from: received {phase.from_!r}; allowed: {', '.join(full)}")
        return full[full.index(phase.from_):]
    if phase.train is None or phase.train == "all":
        return full
    if phase.train == "head":
        return ("head",)
    unknown = [s for s in phase.train if s not in full]
    if unknown:
        raise UserError(f"{where}.train: received {unknown[0]!r}; allowed: head, all, or a list of {', '.join(full)}")
    if not phase.train:
        raise UserError(f"{where}.train: received an empty list; allowed: head, all, or a list of {', '.join(full)}")
    return tuple(s for s in full if s in phase.train)


def expand_schedule(recipe: Recipe, stages: tuple[str, ...]) -> list[Phase]:
    """The recipe's schedule with `gradual` shorthands expanded and stages resolved."""
    out: list[Phase] = []
    for i, item in enumerate(recipe.schedule):
        where = f"schedule.{i}"
        configs = _expand_gradual(item.gradual, stages, where) if isinstance(item, GradualPhase) else [item]
        for cfg in configs:
            idx = len(out)
            selected = select_stages(cfg, stages, where)
            out.append(Phase(idx, cfg.name or f"phase{idx}", cfg, selected,
                             *feature_cache(cfg, selected, recipe.data.augment, where), item=i))
    warning = frozen_random_backbone(recipe.model.weights, out, stages)
    if warning:
        warnings.warn(warning, stacklevel=2)
    return out


def frozen_random_backbone(weights: str, phases: list[Phase], stages: tuple[str, ...]) -> str | None:
    """The warning for a schedule that freezes backbone stages that hold random weights, else None."""
    if parse_weights(weights).pretrained:
        return None
    for phase in phases:
        frozen = [s for s in stages if s not in phase.stages]
        if frozen:
            shown = ", ".join(frozen) if len(frozen) <= 3 else f"{frozen[0]} .. {frozen[-1]}"
            return (f"model.weights is 'none' and phase '{phase.name}' freezes {shown}: a frozen random backbone "
                    f"learns nothing; start from pretrained weights (resnet-tl weights list) or train: all")
    return None


# fastai's fit_one_cycle defaults: start at lr / 25, end at lr / 1e5, warm up over a
# quarter of the phase, momentum 0.95 -> 0.85 -> 0.95.
ONECYCLE_DIV, ONECYCLE_FINAL_DIV, ONECYCLE_PCT_START = 25.0, 1e5, 0.25
ONECYCLE_MOMS = (0.95, 0.85, 0.95)


def _combined_cos(pos, pct: float, start: float, middle: float, end: float, xp):
    """fastai's combined_cos: cosine from start to middle over [0, pct), then middle to end."""
    def cos(a, b, p):  # fastai's SchedCos
        return a + (1.0 + xp.cos(math.pi * (1.0 - p))) * (b - a) / 2.0
    rising = cos(start, middle, xp.clip(pos / pct, 0.0, 1.0))
    falling = cos(middle, end, xp.clip((pos - pct) / (1.0 - pct), 0.0, 1.0))
    return xp.where(pos < pct, rising, falling)


def onecycle_pct(cfg: PhaseConfig) -> float:
    """Fraction of a onecycle phase that warms up: warmup_epochs / epochs when set, else fastai's 0.25."""
    return min(cfg.warmup_epochs / cfg.epochs, 0.99) if cfg.warmup_epochs else ONECYCLE_PCT_START


def lr_formula(step, steps_per_epoch: int, cfg: PhaseConfig, xp):
    """The phase's learning rate after `step` optimizer steps: linear warm-up,
    then constant, linear or cosine decay to 0 at the phase's end; or onecycle
    (fastai's fit_one_cycle, at position step / total of the phase).

    xp: the array namespace to compute in (numpy, or keras.ops inside a
    compiled step), so the plotted and the applied rate are one formula.
    """
    total = float(max(1, cfg.epochs * steps_per_epoch))
    if cfg.decay == "onecycle":
        return _combined_cos(step / total, onecycle_pct(cfg), cfg.lr / ONECYCLE_DIV, cfg.lr, cfg.lr / ONECYCLE_FINAL_DIV, xp)
    warm = float(cfg.warmup_epochs * steps_per_epoch)
    if cfg.decay == "constant":
        decayed = cfg.lr + 0.0 * step
    else:
        t = xp.clip((step - warm) / max(1.0, total - warm), 0.0, 1.0)
        decayed = cfg.lr * (1.0 - t) if cfg.decay == "linear" else cfg.lr * 0.5 * (1.0 + xp.cos(math.pi * t))
    if warm <= 0:
        return decayed
    return xp.where(step < warm, cfg.lr * (step + 1.0) / warm, decayed)


def momentum_formula(step, steps_per_epoch: int, cfg: PhaseConfig, xp):
    """onecycle's momentum after `step` optimizer steps (high while the rate is low); None for other decays."""
    if cfg.decay != "onecycle":
        return None
    total = float(max(1, cfg.epochs * steps_per_epoch))
    return _combined_cos(step / total, onecycle_pct(cfg), *ONECYCLE_MOMS, xp)


def lr_at(step: float, steps_per_epoch: int, cfg: PhaseConfig) -> float:
    """Learning rate after `step` optimizer steps of this phase, as a Python float."""
    return float(lr_formula(np.float64(step), steps_per_epoch, cfg, np))


def describe(phases: list[Phase], steps_per_epoch: int | None = None) -> list[dict]:
    """Plain rows for `train --dry-run`: what each phase trains, how long, at what lr."""
    rows = []
    start = 1
    for p in phases:
        c = p.config
        rows.append({
            "phase": p.index, "name": p.name, "epochs": f"{start}-{start + c.epochs - 1}",
            "n_epochs": c.epochs, "stages": list(p.stages), "lr": c.lr, "optimizer": c.optimizer,
            "warmup_epochs": c.warmup_epochs, "decay": c.decay, "lr_decay_per_stage": c.lr_decay_per_stage,
            "batchnorm": c.batchnorm, "cached_features": p.uses_feature_cache,
            "feature_cache_views": p.cache_views, "augmented_views": p.augmented_views,
        })
        start += c.epochs
    return rows


def schedule_table(recipe: Recipe) -> list[dict]:
    """The expanded schedule as rows (for ``train --dry-run``); builds no model and imports no Keras."""
    return describe(expand_schedule(recipe, BACKBONES[recipe.model.backbone].stages))
