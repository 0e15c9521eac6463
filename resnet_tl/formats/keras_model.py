"""The .keras format: the run's own model file, run by Keras (any backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnet_tl.fileio import atomic_write_bytes
from resnet_tl.formats.context import WriteContext, static_io
from resnet_tl.kerasenv import keras_module
from resnet_tl.models.saving import load_keras_model

keras = keras_module()


def write(ctx: WriteContext, dest: Path, quantize: str) -> None:
    """A byte copy of the run's model.keras: the model that every other format is checked against."""
    atomic_write_bytes(dest, ctx.model_file.read_bytes())


def load(path: Path, num_threads: int | None):
    """(uint8 (B, S, S, 3) -> float32 probabilities (B, C), S) through Keras's compiled predict step."""
    model = load_keras_model(path)
    state = {"size": 0}

    def run(x):
        # predict_on_batch runs a compiled function (an eager call measured ~1.3x slower on 2 CPU cores);
        # a smaller batch is padded to the largest size seen so that function is not traced again.
        n = len(x)
        state["size"] = max(state["size"], n)
        xb = x.astype(np.float32)
        if n < state["size"]:
            xb = np.concatenate([xb, np.zeros((state["size"] - n, *xb.shape[1:]), np.float32)])
        return np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(xb)), np.float32)[:n]

    return run, int(model.input_shape[1])


def io_details(path: Path) -> dict:
    return static_io("image", "float32")
