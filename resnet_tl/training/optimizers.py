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

    Decoupled weight decay follows timm's parameter groups and BEiT's layer
    decay: a variable is decayed by lr x multiplier x weight_decay x value per
    step, and 1-D variables (biases, BatchNorm gamma/beta) are not decayed.
    """
    import keras
    from keras import ops

    spec = OPTIMIZERS[cfg.optimizer]
    base = getattr(keras.optimizers, spec.keras_class)
    kwargs = {"learning_rate": learning_rate}
    if spec.momentum:
        kwargs["momentum"] = cfg.momentum
    decay = float(cfg.weight_decay) if spec.weight_decay else 0.0
    if spec.weight_decay:
        # Keras's AdamW defaults to 0.004; the recipe's 0.0 means none.
        kwargs["weight_decay"] = decay or (0.0 if spec.keras_class == "AdamW" else None)

    class StageScaled(base):
        def _use_weight_decay(self, variable):
            # Keras would decay every variable at the base rate before the
            # update; update_step decays each at its own rate instead.
            return False

        def update_step(self, gradient, variable, learning_rate):
            # Backends hand over their own variable type (a tf.Variable under
            # TF); the optimizer's index maps it back to the Keras variable.
            keras_var = self._trainable_variables[self._get_variable_index(variable)]
            m = multipliers.get(keras_var.path)
            if m is not None:
                learning_rate = learning_rate * m
            if decay and len(keras_var.shape) > 1:
                rate = ops.cast(learning_rate, variable.dtype) * decay
                self.assign_sub(variable, variable * rate)
            return super().update_step(gradient, variable, learning_rate)

    StageScaled.__name__ = f"StageScaled{base.__name__}"
    return StageScaled(**kwargs)
