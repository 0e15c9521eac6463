"""Metrics of a classifier on a split: accuracy, loss, per-class figures."""

from __future__ import annotations

import numpy as np


def inference_batches(x, batch_size: int):
    """Consecutive float32 batches of `x` (a uint8 memmap or any array), in order."""
    for i in range(0, len(x), batch_size):
        yield np.asarray(x[i:i + batch_size], dtype=np.float32)


def predict_probs(model, x, batch_size: int) -> np.ndarray:
    """Class probabilities (N, classes) float32 for uint8 or float pixels (N, S, S, 3)."""
    out = [np.asarray(model(xb, training=False), dtype="float32") for xb in inference_batches(x, batch_size)]
    n_classes = model.output_shape[-1]
    return np.concatenate(out) if out else np.zeros((0, n_classes), "float32")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64; rows are true classes, columns predictions."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def validation_metrics(model, ds, batch_size: int) -> dict:
    """metrics.json of a run: accuracy, loss, per-class accuracy, sizes, classes."""
    probs = predict_probs(model, ds.x_val, batch_size)
    y = np.asarray(ds.y_val, dtype=np.int64)
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], eps, 1.0)))) if len(y) else float("nan")
    cm = confusion_matrix(y, pred, len(ds.classes))
    support = cm.sum(axis=1)
    per_class = {
        c: (float(cm[i, i] / support[i]) if support[i] else None) for i, c in enumerate(ds.classes)
    }
    return {
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "loss": loss,
        "per_class_accuracy": per_class,
        "n_train": int(len(ds.y_train)),
        "n_val": int(len(y)),
        "classes": list(ds.classes),
    }
