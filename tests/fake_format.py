"""A model format that exists only in the tests: this module plus one row in resnet_tl.formats.FORMATS.

Its files hold the run's .keras bytes under another suffix, so its loader runs the real
Keras model and the export check of it is a real one.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from resnet_tl.formats import keras_model
from resnet_tl.formats.context import static_io


def write(ctx, dest: Path, quantize: str) -> None:
    keras_model.write(ctx, dest, quantize)


def load(path: Path, num_threads):
    # Keras opens only files named *.keras.
    copy = Path(tempfile.mkdtemp()) / "model.keras"
    shutil.copyfile(path, copy)
    return keras_model.load(copy, num_threads)


def io_details(path: Path) -> dict:
    return static_io("image", "float32")
