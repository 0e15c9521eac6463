"""Metrics of a classifier on a split, and the files a person looks at.

`classification_metrics(y, probs, classes, ...)` is pure numpy: accuracy,
top-k, per-class precision/recall/F1/support, macro and weighted averages,
the confusion matrix, the most-confused pairs and the most confidently wrong
images. `evaluate(run_or_model, ...)` loads a run (or a bare model file and a
data folder), predicts a split and writes ``eval/<split>/``::

    metrics.json  confusion_matrix.csv  confusion_matrix.png
    misclassified.csv  misclassified/<rank>.png (the images the model saw)
"""

from __future__ import annotations

import csv
import io as _io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from resnet_tl.errors import UserError
from resnet_tl.io import atomic_write_bytes, atomic_write_json, atomic_write_text

SPLITS = ("val", "test")
MOST_CONFUSED = 10  # pairs listed in metrics.json


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


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64; rows are true classes, columns predictions."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def validation_metrics(model, ds, batch_size: int, probs: np.ndarray | None = None) -> dict:
    """metrics.json of a run: accuracy, loss, per-class accuracy, sizes, classes.

    probs: the model's validation probabilities (N, C) when already computed.
    """
    if probs is None:
        probs = predict_probs(model, ds.x_val, batch_size)
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


# ------------------------------------------------------------------ metrics
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


# ------------------------------------------------------------ eval folder
def write_eval(out_dir: str | Path, result: dict, images=None) -> Path:
    """metrics.json, confusion_matrix.csv/.png, misclassified.csv and the
    misclassified images (from `images`, the uint8 arrays the model saw) in `out_dir`."""
    from resnet_tl.plots import plot_confusion

    out_dir = Path(out_dir)
    thumbs = out_dir / "misclassified"
    written = set()
    if images is not None:
        for rank, m in enumerate(result["misclassified"], start=1):
            name = f"{rank:04d}.png"
            atomic_write_bytes(thumbs / name, png_bytes(np.asarray(images[m["index"]])))
            m["image"] = f"misclassified/{name}"
            written.add(name)
    if thumbs.is_dir():  # images of an earlier evaluation that this one did not list (only names we write)
        for old in thumbs.glob("[0-9][0-9][0-9][0-9].png"):
            if old.name not in written:
                old.unlink()
    atomic_write_json(out_dir / "metrics.json", result, indent=2)
    atomic_write_text(out_dir / "confusion_matrix.csv", _cm_csv(result))
    atomic_write_text(out_dir / "misclassified.csv", _misclassified_csv(result))
    atomic_write_bytes(out_dir / "confusion_matrix.png", plot_confusion(np.array(result["confusion_matrix"]), result["classes"]))
    return out_dir


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = _io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _cm_csv(result: dict) -> str:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["true \\ predicted", *result["classes"]])
    for name, row in zip(result["classes"], result["confusion_matrix"]):
        w.writerow([name, *row])
    return buf.getvalue()


def _misclassified_csv(result: dict) -> str:
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "path", "true", "predicted", "confidence", "true_probability"])
    for rank, m in enumerate(result["misclassified"], start=1):
        w.writerow([rank, m["path"] or "", m["true"], m["predicted"], f"{m['confidence']:.6f}", f"{m['true_probability']:.6f}"])
    return buf.getvalue()


def evaluate_in_memory(classifier, ds, recipe, out_dir: str | Path, split: str = "val", probs: np.ndarray | None = None) -> dict:
    """Evaluate a Keras classifier already in memory on a loaded dataset (the end of training).

    probs: the classifier's probabilities (N, C) on `split` when already computed.
    """
    x, y, paths = split_arrays(ds, split, "the dataset")
    if probs is None:
        probs = predict_probs(classifier, x, recipe.train.batch_size)
    result = classification_metrics(
        y, probs, list(ds.classes), top_k=resolve_top_k(recipe.evaluate.top_k, len(ds.classes)),
        misclassified=recipe.evaluate.misclassified, paths=paths,
    )
    result = {"split": split, **result}
    write_eval(out_dir, result, x)
    return result


def split_arrays(ds, split: str, where: str):
    """(x, y, paths) of `split` ('val' or 'test'); UserError when the data has no such split."""
    if split not in SPLITS:
        raise UserError(f"--split: received {split!r}; allowed: {', '.join(SPLITS)}")
    x, y, paths = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}"), getattr(ds, f"paths_{split}")
    if x is None or y is None:
        raise UserError(f"--split {split}: {where} has no {split}/ folder; allowed: val (or add a {split}/ folder beside train/)")
    return x, np.asarray(y, dtype=np.int64), list(paths or [])


# --------------------------------------------------------------- evaluate
@dataclass
class _Target:
    """What `evaluate` runs: a predict function and everything known about it."""

    predict: Callable[[np.ndarray], np.ndarray]  # uint8 (B, S, S, 3) -> float32 (B, C)
    labels: list[str]
    image_size: int
    data_cfg: Any  # recipe.DataConfig
    eval_cfg: Any  # recipe.EvaluateConfig
    batch_size: int
    run: Any = None  # RunPaths for a run folder
    model_path: Path | None = None
    format: str = "keras"


def evaluate(
    target: str | Path, *, data: str | Path | None = None, split: str = "val",
    labels: str | Path | None = None, out: str | Path | None = None,
    batch_size: int | None = None, progress=None,
) -> dict[str, Any]:
    """Evaluate a run folder (its model.keras, recipe and data) or a bare model file on a split.

    A run writes RUN/eval/<split>/ and refreshes RUN/report.html. A model
    file needs `data` (a folder) and labels from its sidecar or `labels` (a
    text file, one class per line); its files go to `out` (default:
    eval/<model stem>/<split>/ beside the model). Never writes into the data
    folder. Returns the metrics with `model`, `split`, `data` and `out_dir`.
    """
    from resnet_tl.data import load_dataset

    if split not in SPLITS:
        raise UserError(f"--split: received {split!r}; allowed: {', '.join(SPLITS)}")
    if not Path(target).exists():
        raise UserError(f"'{target}' not found; allowed: a run folder or a model file (.keras, SavedModel folder, .tflite, .onnx)")
    if data is None and not _is_run(Path(target)):
        raise UserError(f"--data: required with a model file ('{target}'); allowed: a folder of class subfolders or train/ val/ [test/]")
    t = _open_target(target, labels)
    root = Path(data if data is not None else t.data_cfg.dir)
    if out is not None:
        out_dir = Path(out)
    elif t.run is not None:
        out_dir = t.run.root / "eval" / split
    else:
        out_dir = t.model_path.parent / "eval" / t.model_path.name.split(".")[0] / split
    _refuse_inside(out_dir, root)
    ds = load_dataset(t.data_cfg, root_override=data, progress=progress)
    x, y, paths = split_arrays(ds, split, f"data '{root}'")
    y = _match_classes(list(ds.classes), t.labels, y, root, target)
    bs = batch_size or t.batch_size
    probs = [t.predict(np.asarray(x[i:i + bs])) for i in range(0, len(x), bs)]
    probs = np.concatenate(probs) if probs else np.zeros((0, len(t.labels)), np.float32)
    result = classification_metrics(
        y, probs, t.labels, top_k=resolve_top_k(t.eval_cfg.top_k, len(t.labels)),
        misclassified=t.eval_cfg.misclassified, paths=paths,
    )
    result = {"model": str(target), "format": t.format, "split": split, "data": str(root), **result}
    write_eval(out_dir, result, x)
    if t.run is not None:
        from resnet_tl.report import write_report

        write_report(t.run.root)
    return {**result, "out_dir": str(out_dir)}


def _open_target(target: str | Path, labels: str | Path | None) -> _Target:
    from resnet_tl.recipe import DataConfig, EvaluateConfig, load_recipe
    from resnet_tl.runs import open_run

    path = Path(target)
    if _is_run(path):
        if labels is not None:
            raise UserError(f"--labels: a run folder ('{target}') uses its labels.txt; --labels is for model files")
        run = open_run(path)
        if not run.model.is_file():
            raise UserError(f"run '{target}' has no model.keras (training did not finish); allowed: a finished run or a model file")
        recipe = load_recipe(str(run.recipe), [])
        predictor = _load_predictor(run.model)
        return _Target(predictor, _read_labels(run.labels), predictor.image_size, recipe.data, recipe.evaluate,
                       recipe.train.batch_size, run=run, model_path=run.model, format=predictor.format)
    predictor = _load_predictor(path)
    names = _read_labels(Path(labels)) if labels is not None else predictor.labels
    if not names:
        raise UserError(f"'{target}': no labels found beside the model (sidecar <stem>.json or labels.txt); pass --labels FILE (one class per line)")
    return _Target(predictor, list(names), predictor.image_size, DataConfig(image_size=predictor.image_size),
                   EvaluateConfig(), 32, model_path=path, format=predictor.format)


def _is_run(path: Path) -> bool:
    return path.is_dir() and (path / "recipe.yaml").is_file()


def _read_labels(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"labels file '{path}': cannot be read ({e.strerror})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise UserError(f"labels file '{path}': received no class names; allowed: one class name per line")
    return names


def _load_predictor(path: Path):
    from resnet_tl.runtimes import load_predictor

    return load_predictor(path)


def _match_classes(data_classes: list[str], labels: list[str], y: np.ndarray, root: Path, target) -> np.ndarray:
    """y re-indexed to the model's label order; UserError when the class sets differ."""
    if data_classes == labels:
        return y
    if sorted(data_classes) != sorted(labels) or len(set(labels)) != len(labels):
        raise UserError(
            f"data '{root}' has classes {data_classes}; the model '{target}' predicts {labels}; "
            "allowed: a folder with exactly the model's classes"
        )
    index = np.array([labels.index(name) for name in data_classes], dtype=np.int64)
    return index[y]


def _refuse_inside(out_dir: Path, data_root: Path) -> None:
    out_r, data_r = out_dir.resolve(), data_root.resolve()
    if out_r == data_r or data_r in out_r.parents:
        raise UserError(f"--out '{out_dir}': inside the data folder '{data_root}'; allowed: a folder outside the data")
