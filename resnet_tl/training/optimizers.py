"""The optimizer table: the names the recipe schema accepts (`schedule[].optimizer`).

Adding an optimizer is one row: its Keras class and which recipe keys it takes.
This module imports no Keras (the recipe schema reads it); the optimizer is built
by `resnet_tl.training.stages.make_optimizer`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OptimizerSpec:
    """keras_class: the name in keras.optimizers. momentum / weight_decay:
    whether the recipe's `momentum` / `weight_decay` keys are passed on
    (weight decay is decoupled, as in AdamW and Keras's SGD). cycled: the
    Keras attribute that one-cycle (`decay: onecycle`) cycles inversely to
    the rate, as fastai cycles SGD's momentum and Adam's beta_1."""

    keras_class: str
    momentum: bool = False
    weight_decay: bool = False
    cycled: str | None = None


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "adam": OptimizerSpec("Adam", cycled="beta_1"),
    "adamw": OptimizerSpec("AdamW", weight_decay=True, cycled="beta_1"),
    "sgd": OptimizerSpec("SGD", momentum=True, weight_decay=True, cycled="momentum"),
}
