"""The optimizer table and the one constructor every phase uses.

`OPTIMIZERS` is the list the recipe schema accepts (`train.optimizer`,
`schedule[].optimizer`). Adding an optimizer is one row: its Keras class and
which recipe keys it takes. Importing this module imports no Keras.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OptimizerSpec:
    """keras_class: the name in keras.optimizers. momentum / weight_decay:
    whether the recipe's `momentum` / `weight_decay` keys are passed on
    (weight decay is decoupled, as in AdamW and Keras's SGD)."""

    keras_class: str
    momentum: bool = False
    weight_decay: bool = False


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "adam": OptimizerSpec("Adam"),
    "adamw": OptimizerSpec("AdamW", weight_decay=True),
    "sgd": OptimizerSpec("SGD", momentum=True, weight_decay=True),
}


def make_optimizer(cfg, learning_rate, multipliers: dict[str, float]):
    """The phase's optimizer (cfg: recipe.PhaseConfig); per-variable lr multipliers scale each update.

    learning_rate: a float or a Keras LearningRateSchedule (`schedule.make_lr_schedule`).

    Keras optimizers take one learning rate; every optimizer routes each
    variable's update through `update_step(grad, var, lr)` on every backend,
    so scaling `lr` there gives layer-wise rates without a second optimizer.
    Decoupled weight decay keeps the base rate.
    """
    import keras

    spec = OPTIMIZERS[cfg.optimizer]
    base = getattr(keras.optimizers, spec.keras_class)
    kwargs = {"learning_rate": learning_rate}
    if spec.momentum:
        kwargs["momentum"] = cfg.momentum
    if spec.weight_decay:
        # Keras's AdamW defaults to 0.004; the recipe's 0.0 means none.
        kwargs["weight_decay"] = cfg.weight_decay or (0.0 if spec.keras_class == "AdamW" else None)

    class StageScaled(base):
        def update_step(self, gradient, variable, learning_rate):
            # Backends hand over their own variable type (a tf.Variable under
            # TF); the optimizer's index maps it back to the Keras variable.
            keras_var = self._trainable_variables[self._get_variable_index(variable)]
            m = multipliers.get(keras_var.path)
            if m is not None:
                learning_rate = learning_rate * m
            return super().update_step(gradient, variable, learning_rate)

    StageScaled.__name__ = f"StageScaled{base.__name__}"
    return StageScaled(**kwargs)
