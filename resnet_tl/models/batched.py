"""The forward pass over many images that every stage uses: batched, compiled, one shape.

    probs = predict_probs(classifier, x_val, batch_size=64)   # uint8 (N, S, S, 3) -> float32 (N, C)
"""

from __future__ import annotations

import numpy as np


def inference_batches(x, batch_size: int):
    """Consecutive float32 batches of `x` (a uint8 memmap or any array), in order."""
    for i in range(0, len(x), batch_size):
        yield np.asarray(x[i:i + batch_size], dtype=np.float32)


def predict_batched(model, x, batch_size: int, transform=None) -> np.ndarray:
    """model outputs (N, ...) float32 for inputs `x` (N, ...), `batch_size` at a time.

    predict_on_batch runs a compiled function (calling the model eagerly is
    several times slower under TensorFlow); the last batch is padded to full
    size so that function is traced once, not again for a smaller shape.
    transform: applied to each float32 batch first (e.g. augmentation).
    """
    out = []
    for xb in inference_batches(x, batch_size):
        n = len(xb)
        if n < batch_size and len(x) > batch_size:
            xb = np.concatenate([xb, np.zeros((batch_size - n, *xb.shape[1:]), xb.dtype)])
        if transform is not None:
            xb = transform(xb)
        out.append(np.asarray(model.predict_on_batch(xb), dtype="float32")[:n])
    if out:
        return np.concatenate(out)
    return np.zeros((0, *model.output_shape[1:]), "float32")


def predict_probs(model, x, batch_size: int) -> np.ndarray:
    """Class probabilities (N, classes) float32 for uint8 or float pixels (N, S, S, 3)."""
    return predict_batched(model, x, batch_size)
