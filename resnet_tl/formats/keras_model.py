"""The .keras format: the run's own model file, run by Keras (any backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from resnet_tl.fileio import atomic_write_bytes
from resnet_tl.formats.context import WriteContext, static_io
from resnet_tl.models.batched import device_batch_size, dispatch, run_batches, to_numpy
from resnet_tl.models.saving import load_keras_model


def write(ctx: WriteContext, dest: Path, quantize: str) -> None:
    """A byte copy of the run's model.keras: the model that every other format is checked against."""
    atomic_write_bytes(dest, ctx.model_file.read_bytes())


def load(path: Path, num_threads: int | None):
    """(a `KerasRunner`: uint8 (B, S, S, 3) -> float32 probabilities (B, C), S)."""
    model = load_keras_model(path)
    return KerasRunner(model), int(model.input_shape[1])


class KerasRunner:
    """A Keras model on resnet-tl's one inference path (`resnet_tl.models.batched`).

    It batches by itself (`batches_itself`): a Predictor hands it whole arrays, so
    batches are not synchronised with the host one by one. Smaller batches are padded
    to the largest size seen, so the compiled function is not traced again.
    """

    batches_itself = True

    def __init__(self, model):
        self.model = model
        self.largest = 0

    def __call__(self, x, batch_size: int | None = None) -> np.ndarray:
        """Probabilities (N, C) for uint8 x (N, S, S, 3), `batch_size` (default: all of x) at a time."""
        bs = device_batch_size(batch_size or len(x) or 1)
        self.largest = max(self.largest, min(bs, len(x)))
        return run_batches(self.model, x, bs, pad_to=self.largest)

    def submit(self, x) -> Callable[[], np.ndarray]:
        """Dispatch x (N, S, S, 3) as one batch now; the returned function waits for its probabilities."""
        self.largest = max(self.largest, len(x))
        pending = dispatch(self.model, np.asarray(x), self.largest)
        return lambda: to_numpy(*pending)


def io_details(path: Path) -> dict:
    return static_io("image", "float32")
