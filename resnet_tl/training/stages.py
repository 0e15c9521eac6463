"""What trains in a phase and how fast: freezing by stage, per-stage learning rates,
the phase's learning-rate schedule and the optimizer that applies them.

Stages are named as Keras names them (`resnet_tl.training.schedule`); depth below
the head counts from the head: head = 0, the last backbone stage = 1, ... stem = len(stages).
"""

from __future__ import annotations

from resnet_tl.kerasenv import keras_module
from resnet_tl.models.classifier import stage_layers
from resnet_tl.recipe import PhaseConfig
from resnet_tl.training.optimizers import OPTIMIZERS
from resnet_tl.training.schedule import Phase, all_stages, lr_formula, momentum_formula

keras = keras_module()
from keras import ops  # noqa: E402


def apply_freezing(classifier, phase: Phase) -> None:
    """Set `trainable` on every layer for `phase`.

    Frozen BatchNorm runs in inference mode: Keras 3 uses the moving statistics
    (and leaves them untouched) whenever a BatchNormalization layer has
    trainable=False, so 'frozen' means exactly that.
    """
    classifier.trainable = True  # containers must be trainable for their leaves to count
    for layer, stage in stage_layers(classifier):
        trains = stage in phase.stages
        if isinstance(layer, keras.layers.BatchNormalization) and phase.config.batchnorm == "frozen":
            trains = False
        layer.trainable = trains


def lr_multipliers(classifier, phase: Phase, stages: tuple[str, ...]) -> dict[str, float]:
    """variable.path -> factor^depth for layer-wise lr decay (only factors != 1)."""
    factor = phase.config.lr_decay_per_stage
    if factor == 1.0:
        return {}
    full = all_stages(stages)
    depth = {s: len(full) - 1 - i for i, s in enumerate(full)}
    out = {}
    for layer, stage in stage_layers(classifier):
        for v in layer.trainable_weights:
            m = factor ** depth[stage]
            if m != 1.0:
                out[v.path] = m
    return out


def make_lr_schedule(cfg: PhaseConfig, steps_per_epoch: int):
    """A Keras LearningRateSchedule of `lr_formula`, in keras.ops (any backend)."""
    class PhaseSchedule(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return lr_formula(ops.cast(step, "float32"), steps_per_epoch, cfg, ops)

        def get_config(self):
            return {}

    return PhaseSchedule()


def phase_optimizer(classifier, phase: Phase, stages: tuple[str, ...], steps_per_epoch: int, learning_rate=None):
    """The optimizer a phase trains with: its optimizer row, lr curve and per-stage rates.

    learning_rate: replaces the phase's own lr curve (lr-find's range test).
    """
    cfg = phase.config
    cycle = None
    if learning_rate is None and cfg.decay == "onecycle":
        def cycle(step):
            return momentum_formula(ops.cast(step, "float32"), steps_per_epoch, cfg, ops)
    return make_optimizer(cfg, learning_rate if learning_rate is not None else make_lr_schedule(cfg, steps_per_epoch),
                          lr_multipliers(classifier, phase, stages), cycle)


def make_optimizer(cfg, learning_rate, multipliers: dict[str, float], momentum_cycle=None):
    """The phase's optimizer (cfg: recipe.PhaseConfig); per-variable lr multipliers scale each update.

    learning_rate: a float or a Keras LearningRateSchedule (`schedule.make_lr_schedule`).
    momentum_cycle: step -> momentum (one-cycle), applied to the optimizer row's `cycled`
    attribute (SGD momentum, Adam beta_1) at every step; None keeps the recipe's.

    Keras optimizers take one learning rate; every optimizer routes each
    variable's update through `update_step(grad, var, lr)` on every backend,
    so scaling `lr` there gives layer-wise rates without a second optimizer.

    Decoupled weight decay follows timm's parameter groups and BEiT's layer
    decay: a variable is decayed by lr x multiplier x weight_decay x value per
    step, and 1-D variables (biases, BatchNorm gamma/beta) are not decayed.
    """
    spec = OPTIMIZERS[cfg.optimizer]
    base = getattr(keras.optimizers, spec.keras_class)
    kwargs = {"learning_rate": learning_rate}
    if spec.momentum:
        # A cycled SGD needs its momentum buffers: Keras builds them only for momentum != 0.
        kwargs["momentum"] = cfg.momentum or (0.9 if momentum_cycle else 0.0)
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
            if momentum_cycle is None:
                return super().update_step(gradient, variable, learning_rate)
            momentum = momentum_cycle(self.iterations)
            if spec.cycled == "momentum":
                # Keras's SGD update (velocity = m * velocity - lr * g; w += velocity) with this
                # step's m: its own code tests `momentum != 0` in Python, which a traced m cannot answer.
                velocity = self.momentums[self._get_variable_index(variable)]
                lr = ops.cast(learning_rate, variable.dtype)
                self.assign(velocity, velocity * ops.cast(momentum, variable.dtype) - ops.cast(gradient, variable.dtype) * lr)
                return self.assign_add(variable, velocity)
            # Adam reads beta_1 only through ops, so this step's value can stand in for the constant.
            constant = getattr(self, spec.cycled)
            object.__setattr__(self, spec.cycled, momentum)
            try:
                return super().update_step(gradient, variable, learning_rate)
            finally:
                object.__setattr__(self, spec.cycled, constant)

    StageScaled.__name__ = f"StageScaled{base.__name__}"
    return StageScaled(**kwargs)
