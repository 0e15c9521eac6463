"""Importing Keras quietly, and only when a command needs it.

TensorFlow prints several lines of C++ logging at import; a CLI user should
see none of it. Call `keras_module()` instead of a top-level `import keras` in
code the CLI reaches at start-up.
"""

from __future__ import annotations

import os


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ and absl logging (must run before its import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def keras_module():
    """Import and return keras, with TensorFlow's start-up noise silenced."""
    quiet_tensorflow()
    import keras

    return keras


def backend_name() -> str:
    """The Keras backend that `import keras` will pick, without importing it."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")
