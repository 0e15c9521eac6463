"""Importing Keras quietly, and only when a command needs it.

TensorFlow 2.21 writes C++ log lines to the process's stderr at import and at
first device query, before its own log-level settings take effect. A CLI user
should see none of it, so the first import runs with file descriptor 2
pointed at /dev/null; compiled programs are kept across runs
(`resnet_tl.compile_cache`). Call `keras_module()` instead of a top-level
`import keras` in code the CLI reaches.
"""

from __future__ import annotations

import contextlib
import os
import sys

from resnet_tl import compile_cache


def quiet_tensorflow() -> None:
    """Ask TensorFlow's C++ and absl logging for errors only (before its import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


@contextlib.contextmanager
def fd2_silenced():
    """Point file descriptor 2 at /dev/null: C++ runtimes (TensorFlow, LiteRT)
    log there directly, past Python's sys.stderr."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def keras_module():
    """Import and return keras, with TensorFlow's start-up noise silenced."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    quiet_tensorflow()
    compile_cache.before_keras_import()
    with fd2_silenced():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the CUDA probe logs here
    compile_cache.after_keras_import(keras.backend.backend())
    return keras

