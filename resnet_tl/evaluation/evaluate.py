"""Evaluate a classifier on a split and write the files a person looks at.

`evaluate(run_or_model, ...)` loads a run (or a bare model file and a data
folder), predicts a split (`resnet_tl.formats.predictor`), computes its figures
(`resnet_tl.evaluation.metrics`) and writes ``eval/<split>/``::

    metrics.json  confusion_matrix.csv  confusion_matrix.png  reliability.png
    misclassified.csv  misclassified/<rank>.png (the images the model saw)

metrics.json's "calibration" holds the expected calibration error before and
after temperature scaling (the run's calibration.json or the model's
sidecar) and the reliability curves `reliability.png` draws.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from resnet_tl.data import load_dataset
from resnet_tl.errors import UserError
from resnet_tl.evaluation.html_report import write_report
from resnet_tl.evaluation.metrics import classification_metrics, resolve_top_k
from resnet_tl.evaluation.plots import plot_confusion, plot_reliability
from resnet_tl.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from resnet_tl.formats import detect_format, file_kinds
from resnet_tl.formats.predictor import load_predictor
from resnet_tl.models.batched import predict_probs
from resnet_tl.inference.calibration import calibration_report, load_calibration
from resnet_tl.inference.tta import predict_tta, views_for
from resnet_tl.recipe import DataConfig, EvaluateConfig, load_recipe
from resnet_tl.runs import is_run, read_labels, resolve_model

SPLITS = ("val", "test")


# ------------------------------------------------------------ eval folder
def write_eval(out_dir: str | Path, result: dict, images=None, classifier=None) -> Path:
    """metrics.json, confusion_matrix.csv/.png, reliability.png, misclassified.csv and the
    misclassified images (from `images`, the uint8 arrays the model saw) in `out_dir`.

    classifier: the Keras classifier, when there is one: each misclassified image also gets
    misclassified/<rank>_gradcam.png, its Grad-CAM for the predicted and for the true class side by side.
    """
    out_dir = Path(out_dir)
    thumbs = out_dir / "misclassified"
    written = set()
    if images is not None:
        for rank, m in enumerate(result["misclassified"], start=1):
            name = f"{rank:04d}.png"
            atomic_write_bytes(thumbs / name, png_bytes(np.asarray(images[m["index"]])))
            m["image"] = f"misclassified/{name}"
            written.add(name)
        if classifier is not None and result["misclassified"]:
            written |= _gradcam_pairs(classifier, images, result, thumbs)
    if thumbs.is_dir():  # images of an earlier evaluation that this one did not list (only names we write)
        for old in [*thumbs.glob("[0-9][0-9][0-9][0-9].png"), *thumbs.glob("[0-9][0-9][0-9][0-9]_gradcam.png")]:
            if old.name not in written:
                old.unlink()
    atomic_write_json(out_dir / "metrics.json", result, indent=2)
    atomic_write_text(out_dir / "confusion_matrix.csv", _cm_csv(result))
    atomic_write_text(out_dir / "misclassified.csv", _misclassified_csv(result))
    atomic_write_bytes(out_dir / "confusion_matrix.png", plot_confusion(np.array(result["confusion_matrix"]), result["classes"]))
    cal = result.get("calibration")
    if cal and cal["reliability_before"]["n"]:
        atomic_write_bytes(out_dir / "reliability.png",
                           plot_reliability(cal["reliability_before"], cal["reliability_after"], cal["temperature"]))
    return out_dir


def _gradcam_pairs(classifier, images, result: dict, thumbs: Path) -> set[str]:
    """misclassified/<rank>_gradcam.png: heatmaps of the predicted and the true class, side by side."""
    from resnet_tl.inference.explain import side_by_side
    from resnet_tl.inference.gradcam import GradCam  # imports Keras: only when a Keras model is at hand

    wrong = result["misclassified"]
    classes = result["classes"]
    x = np.stack([np.asarray(images[m["index"]]) for m in wrong])
    cam = GradCam(classifier)
    predicted = cam(x, [classes.index(m["predicted"]) for m in wrong])[0]
    true = cam(x, [classes.index(m["true"]) for m in wrong])[0]
    names = set()
    for rank, (m, hp, ht) in enumerate(zip(wrong, predicted, true), start=1):
        name = f"{rank:04d}_gradcam.png"
        buf = io.BytesIO()
        side_by_side(x[rank - 1], [(hp, f"pred {m['predicted']}"), (ht, f"true {m['true']}")]).save(buf, "PNG")
        atomic_write_bytes(thumbs / name, buf.getvalue())
        m["gradcam"] = f"misclassified/{name}"
        names.add(name)
    return names


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _cm_csv(result: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["true \\ predicted", *result["classes"]])
    for name, row in zip(result["classes"], result["confusion_matrix"]):
        w.writerow([name, *row])
    return buf.getvalue()


def _misclassified_csv(result: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["rank", "path", "true", "predicted", "confidence", "true_probability"])
    for rank, m in enumerate(result["misclassified"], start=1):
        w.writerow([rank, m["path"] or "", m["true"], m["predicted"], f"{m['confidence']:.6f}", f"{m['true_probability']:.6f}"])
    return buf.getvalue()


def evaluate_in_memory(classifier, ds, cfg: EvaluateConfig, out_dir: str | Path, split: str = "val",
                       probs: np.ndarray | None = None, temperature: float | None = None, batch_size: int = 32) -> dict:
    """Evaluate a Keras classifier already in memory on a loaded dataset (the end of training).

    probs: the classifier's probabilities (N, C) on `split` when already computed.
    temperature: the run's fitted temperature, for the calibration figures.
    """
    x, y, paths = split_arrays(ds, split, "the dataset")
    if probs is None:
        probs = predict_probs(classifier, x, batch_size)
    result = classification_metrics(
        y, probs, list(ds.classes), top_k=resolve_top_k(cfg.top_k, len(ds.classes)),
        misclassified=cfg.misclassified, paths=paths,
    )
    result = {"split": split, **result, "calibration": calibration_report(probs, y, temperature)}
    write_eval(out_dir, result, x, classifier)
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
    batch_size: int | None = None, progress=None, tta: bool = False,
) -> dict[str, Any]:
    """Evaluate a run folder (its model.keras, recipe and data) or a bare model file on a split.

    A run writes RUN/eval/<split>/ and refreshes RUN/report.html. A model
    file needs `data` (a folder) and labels from its sidecar or `labels` (a
    text file, one class per line); its files go to `out` (default:
    eval/<model stem>/<split>/ beside the model). Never writes into the data
    folder. tta: average each image's probabilities over a flip and crops
    (`resnet_tl.inference.tta`, 5 model calls per image). Returns the metrics with
    `model`, `split`, `data`, `tta`, `seconds` (prediction time) and `out_dir`.
    """
    if split not in SPLITS:
        raise UserError(f"--split: received {split!r}; allowed: {', '.join(SPLITS)}")
    if not Path(target).exists():
        raise UserError(f"'{target}' not found; allowed: a run folder or a model file ({file_kinds()})")
    if data is None and not is_run(target):
        detect_format(target)  # a folder that is neither a run nor a model says so, before asking for --data
        raise UserError(f"--data: required with a model file ('{target}'); allowed: a folder of class subfolders or train/ val/ [test/]")
    t = _open_target(target, labels)
    root = Path(data if data is not None else t.data_cfg.dir)
    if out is not None:
        out_dir = Path(out)
    elif t.run is not None:
        out_dir = t.run.eval_dir(split)
    else:
        out_dir = t.model_path.parent / "eval" / t.model_path.name.split(".")[0] / split
    _refuse_inside(out_dir, root)
    ds = load_dataset(t.data_cfg, root_override=data, progress=progress)
    x, y, paths = split_arrays(ds, split, f"data '{root}'")
    y = _match_classes(list(ds.classes), t.labels, y, root, target)
    bs = t.predict.batch_size = batch_size or t.batch_size
    started = time.perf_counter()
    if not len(x):
        probs = np.zeros((0, len(t.labels)), np.float32)
    elif tta:
        names = views_for(t.data_cfg.augment.flip if t.run is not None else None)
        probs = np.concatenate([predict_tta(t.predict, np.asarray(x[i:i + bs]), names) for i in range(0, len(x), bs)])
    else:
        probs = t.predict(x)
    seconds = time.perf_counter() - started
    result = classification_metrics(
        y, probs, t.labels, top_k=resolve_top_k(t.eval_cfg.top_k, len(t.labels)),
        misclassified=t.eval_cfg.misclassified, paths=paths,
    )
    cal = load_calibration(target)
    result = {"model": str(target), "format": t.format, "split": split, "data": str(root), "tta": tta,
              "seconds": round(seconds, 3), **result,
              "calibration": _calibration(probs, y, cal.temperature if cal else None, tta)}
    write_eval(out_dir, result, x, _keras_classifier(t))
    if t.run is not None:
        write_report(t.run.root)
    return {**result, "out_dir": str(out_dir)}


def _keras_classifier(t: _Target):
    """The Keras classifier of a run or .keras file (for Grad-CAM), else None: other formats have no gradients here."""
    if t.format != "keras" or t.model_path is None:
        return None
    from resnet_tl.kerasenv import keras_module

    return keras_module().saving.load_model(t.model_path)


def _calibration(probs, y, temperature: float | None, tta: bool) -> dict:
    """calibration_report; with TTA the stored temperature is not applied: it was fitted on single views."""
    if not (tta and temperature):
        return calibration_report(probs, y, temperature)
    return {**calibration_report(probs, y, None),
            "note": f"the stored temperature ({temperature:.3g}) was fitted without TTA; not applied to averaged views"}


def _open_target(target: str | Path, labels: str | Path | None) -> _Target:
    model_path, run = resolve_model(target)
    predictor = load_predictor(model_path)
    if run is not None:
        if labels is not None:
            raise UserError(f"--labels: a run folder ('{target}') uses its labels.txt; --labels is for model files")
        recipe = load_recipe(str(run.recipe), [])
        return _Target(predictor, read_labels(run.labels), predictor.image_size, recipe.data, recipe.evaluate,
                       recipe.train.batch_size, run=run, model_path=run.model, format=predictor.format)
    names = read_labels(labels) if labels is not None else predictor.labels
    if not names:
        raise UserError(f"'{target}': no labels found beside the model (sidecar <stem>.json or labels.txt); pass --labels FILE (one class per line)")
    return _Target(predictor, list(names), predictor.image_size, DataConfig(image_size=predictor.image_size, resize=predictor.resize),
                   EvaluateConfig(), 32, model_path=model_path, format=predictor.format)


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
