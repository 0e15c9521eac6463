"""Pure numpy metrics of a classifier's probabilities: no model, no files.

`classification_metrics(y, probs, classes, ...)` gives accuracy, top-k,
per-class precision/recall/F1/support, macro and weighted averages, the
confusion matrix, the most-confused pairs and the most confidently wrong
images. `validation_metrics` is the short form a run keeps in metrics.json.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MOST_CONFUSED = 10  # pairs listed in metrics.json


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64; rows are true classes, columns predictions."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def validation_metrics(ds, probs: np.ndarray) -> dict:
    """metrics.json of a run: accuracy, loss, per-class accuracy, sizes, classes.

    ds: the run's dataset (y_train, y_val, classes); probs: the model's
    validation probabilities (N_val, C).
    """
    m = classification_metrics(ds.y_val, probs, list(ds.classes), misclassified=0)
    nan = float("nan")
    return {
        "accuracy": nan if m["accuracy"] is None else m["accuracy"],
        "loss": nan if m["loss"] is None else m["loss"],
        # A class's accuracy is its recall; undefined without validation images.
        "per_class_accuracy": {r["class"]: (r["recall"] if r["support"] else None) for r in m["per_class"]},
        "n_train": int(len(ds.y_train)),
        "n_val": m["n"],
        "classes": m["classes"],
    }


def resolve_top_k(top_k: int | None, n_classes: int) -> int | None:
    """k of top-k accuracy: the recipe's value, else 5 when there are at least 5 classes, else None."""
    if top_k is not None:
        return int(top_k)
    return 5 if n_classes >= 5 else None


def classification_metrics(
    y_true, probs, classes: list[str], *, top_k: int | None = None,
    misclassified: int = 24, paths: list | None = None,
) -> dict[str, Any]:
    """Every figure of a split from labels (N,) and probabilities (N, C).

    Conventions (those of scikit-learn's `classification_report`): a
    precision, recall or F1 whose denominator is 0 is 0.0; macro and weighted
    averages run over the classes that occur in y_true or in the
    predictions. `top_k` is used as given (`resolve_top_k` picks the
    default). Most-confused pairs are off-diagonal cells by count (ties: true
    class, then predicted class, by index); misclassified images are ordered
    by the probability of the wrong prediction, highest first (ties: index).
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    n, c = len(y), len(classes)
    if p.shape != (n, c):
        raise ValueError(f"probs: received shape {p.shape}; expected ({n}, {c})")
    pred = p.argmax(axis=1) if n else np.zeros(0, np.int64)
    cm = confusion_matrix(y, pred, c)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = (support + predicted) > 0

    def avg(weights):
        w = np.where(present, weights, 0.0).astype(np.float64)
        total = w.sum()
        return {k: (float((v * w).sum() / total) if total else 0.0)
                for k, v in (("precision", precision), ("recall", recall), ("f1", f1))}

    k = top_k if top_k is not None and n else None
    top_k_acc = None
    if k is not None:
        top = np.argsort(-p, axis=1, kind="stable")[:, :k]
        top_k_acc = float((top == y[:, None]).any(axis=1).mean())
    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(p[np.arange(n), y], eps, 1.0)))) if n else None
    return {
        "n": int(n),
        "classes": list(classes),
        "accuracy": float((pred == y).mean()) if n else None,
        "loss": loss,
        "top_k": k,
        "top_k_accuracy": top_k_acc,
        "per_class": [
            {"class": name, "precision": float(precision[i]), "recall": float(recall[i]),
             "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(classes)
        ],
        "macro_avg": {**avg(np.ones(c)), "support": int(n)},
        "weighted_avg": {**avg(support), "support": int(n)},
        "confusion_matrix": cm.tolist(),
        "most_confused": _most_confused(cm, classes, MOST_CONFUSED),
        "misclassified": _most_confident_wrong(y, p, pred, classes, paths, misclassified),
    }


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def _most_confused(cm: np.ndarray, classes: list[str], limit: int) -> list[dict]:
    support = cm.sum(axis=1)
    cells = [(-int(cm[t, q]), t, q) for t in range(len(classes)) for q in range(len(classes)) if t != q and cm[t, q] > 0]
    return [
        {"true": classes[t], "predicted": classes[q], "count": -neg, "rate": float(-neg / support[t])}
        for neg, t, q in sorted(cells)[:limit]
    ]


def _most_confident_wrong(y, p, pred, classes, paths, limit: int) -> list[dict]:
    wrong = np.flatnonzero(pred != y)
    conf = p[wrong, pred[wrong]]
    order = wrong[np.lexsort((wrong, -conf))][:limit]
    return [
        {"index": int(i), "path": str(paths[i]) if paths is not None and len(paths) > i else None,
         "true": classes[y[i]], "predicted": classes[pred[i]],
         "confidence": float(p[i, pred[i]]), "true_probability": float(p[i, y[i]])}
        for i in order
    ]
