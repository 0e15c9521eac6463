"""An exponential moving average of the classifier's weights (`train.ema: DECAY`), as timm's
ModelEma keeps one: updated after every optimizer step, across phases, over every float
variable of the classifier (BatchNorm's moving statistics included, as timm averages
buffers), with the warm-up of TensorFlow's ExponentialMovingAverage(num_updates):

    decay_n = min(DECAY, (1 + n) / (10 + n))      n = updates done before this one
    ema     = decay_n * ema + (1 - decay_n) * weights

so early averages are not dominated by the random start. The run's validation metrics,
best-epoch choice, calibration and model.keras all use the averaged weights; the
checkpoint holds them (`ema/...` arrays and `RunState.ema_updates`), so a resumed run
continues the same average.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from resnet_tl.kerasenv import keras_module
from resnet_tl.training.distribute import to_numpy

keras = keras_module()


def ema_decay(decay: float, n: int) -> float:
    """The decay of update number `n` (0-based): min(decay, (1 + n) / (10 + n))."""
    return min(decay, (1.0 + n) / (10.0 + n))


class WeightEMA:
    """Shadow copies of `classifier`'s float variables; `update()` after each step."""

    def __init__(self, classifier, decay: float, updates: int = 0):
        self.decay, self.updates = float(decay), int(updates)
        self.targets = [v for v in classifier.variables if "float" in str(v.dtype)]
        # Started from a copy: under TensorFlow a Variable made from another's value shares its storage.
        self.variables = [keras.Variable(to_numpy(v), trainable=False, dtype=v.dtype, name=f"ema_{i}")
                          for i, v in enumerate(self.targets)]

    def update(self) -> None:
        d = ema_decay(self.decay, self.updates)
        for e, v in zip(self.variables, self.targets):
            e.assign(e * d + v * (1.0 - d))
        self.updates += 1

    def arrays(self) -> list[np.ndarray]:
        return [to_numpy(e) for e in self.variables]

    @contextmanager
    def applied(self):
        """The classifier holds the averaged weights inside the block, its own again after it."""
        live = [to_numpy(v) for v in self.targets]
        for v, e in zip(self.targets, self.variables):
            v.assign(e.value)
        try:
            yield
        finally:
            for v, value in zip(self.targets, live):
                v.assign(value)


class EMAUpdate(keras.callbacks.Callback):
    """Calls `ema.update()` after every training batch (once per execution with steps_per_execution > 1)."""

    def __init__(self, ema: WeightEMA):
        super().__init__()
        self.ema = ema

    def on_train_batch_end(self, batch, logs=None):
        # Under JAX the weights live outside the variables during an epoch; reading
        # Callback.model copies them back (jax_state_sync), a no-op elsewhere.
        _ = self.model
        self.ema.update()
