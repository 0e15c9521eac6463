"""Process-global state a library call sets for its own work, and gives back.

Training seeds Python's `random`, NumPy's global generator, TensorFlow and
Keras (`keras.utils.set_random_seed`), sets the Keras dtype policy and, under
JAX, the Keras distribution. A program that calls `train()` must find all of
it as it left it: `preserved()` records it on entry and restores it on exit.
"""

from __future__ import annotations

import contextlib
import random
import sys

import numpy as np
from resnet_tl.kerasenv import keras_module

keras = keras_module()


@contextlib.contextmanager
def preserved():
    """Restore seeds, the dtype policy and the Keras distribution on exit."""
    py_state, np_state = random.getstate(), np.random.get_state()
    policy = keras.config.dtype_policy()
    distribution = keras.distribution.distribution()
    keras_seeds = _keras_seed_state()
    tf_seed = _tf_global_seed()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        keras.mixed_precision.set_dtype_policy(policy)
        if keras.distribution.distribution() is not distribution:
            keras.distribution.set_distribution(distribution)
        _set_keras_seed_state(keras_seeds)
        _set_tf_global_seed(tf_seed)


# Keras keeps the seed of `set_random_seed` and its global SeedGenerator in
# its global_state module and offers no public getter; TensorFlow likewise for
# its global seed. Both are read defensively: a Keras or TensorFlow that moved
# them leaves that part unrestored rather than failing the run.
_KERAS_SEED_KEYS = ("global_random_seed", "global_seed_generator")


def _keras_seed_state() -> dict | None:
    try:
        from keras.src.backend.common import global_state
    except ImportError:
        return None
    return {k: global_state.get_global_attribute(k) for k in _KERAS_SEED_KEYS}


def _set_keras_seed_state(state: dict | None) -> None:
    if state is None:
        return
    from keras.src.backend.common import global_state

    for k, v in state.items():
        global_state.set_global_attribute(k, v)


def _tf_global_seed():
    if "tensorflow" not in sys.modules:
        return ("seed", None)  # not imported yet, so never seeded
    try:
        from tensorflow.python.eager import context

        return ("seed", context.global_seed())
    except (ImportError, AttributeError):
        return None


def _set_tf_global_seed(saved) -> None:
    if saved is None or "tensorflow" not in sys.modules:
        return
    import tensorflow as tf

    tf.random.set_seed(saved[1])
