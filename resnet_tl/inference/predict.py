"""Class probabilities for image files, from any model resnet-tl writes.

    predict("runs/x", ["photos/", "extra/*.jpg", "one.png"], top_k=3)

The model is a run folder (its model.keras and labels.txt), a ``.keras``
file, a SavedModel folder, a ``.tflite`` or an ``.onnx`` file
(`resnet_tl.formats.predictor.load_predictor`); every format gives the same rows.
PATHs are files, folders (searched recursively for image files; hidden files
and folders skipped) or globs. Images are decoded by
`resnet_tl.data.decode` at the model's size, exactly as for training, on a
few threads, and predicted in batches. A file that cannot be
decoded gets a row with its reason and no prediction; the rest are still
predicted.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from resnet_tl.cpus import usable_cpus
from resnet_tl.data.decode import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, PILLOW_MAX_PIXELS, DecodeError, decode_bytes
from resnet_tl.errors import UserError
from resnet_tl.fileio import atomic_write_bytes
from resnet_tl.formats import detect_format
from resnet_tl.formats.predictor import load_predictor
from resnet_tl.inference.calibration import load_calibration
from resnet_tl.inference.inputs import iter_inputs, read_source
from resnet_tl.inference.outputs import CSV_ERRORS, check_output, jsonl_line, output_format, to_csv
from resnet_tl.inference.tta import predict_tta, views_for
from resnet_tl.recipe import load_recipe
from resnet_tl.runs import read_labels, resolve_model


def predict(
    model: str | Path, inputs: list[str], *, top_k: int = 5, batch_size: int = 32,
    labels: str | Path | None = None, output: str | Path | None = None, fmt: str | None = None,
    progress: Callable[[int, int | None], None] | None = None, tta: bool = False,
    threshold: float | str | None = None, min_precision: float | None = None, max_pixels: int | None = None,
) -> dict[str, Any]:
    """Top-k labels and probabilities per image, all rows in memory; with `output`, also writes it.

    For small inputs; `predict_stream` is the same thing row by row for any
    number of files. Returns {"model", "format", "image_size", "labels",
    "top_k", "tta", "tta_views", "threshold", "max_pixels", "predicted", "failed", "rows": [{"path",
    "top": [{"label", "probability"}], "error", "detail"}]}, rows in input
    order. With a threshold each row also has "prediction" (the top-1 label,
    or "unsure" when its confidence is below the threshold) and "confidence"
    (top-1 probability, calibrated with --threshold auto); "top" stays the
    model's own probabilities.
    """
    out_fmt = output_format(fmt, output)
    stream = predict_stream(model, inputs, top_k=top_k, batch_size=batch_size, labels=labels, tta=tta,
                            threshold=threshold, min_precision=min_precision, progress=progress,
                            max_pixels=max_pixels, output=output, fmt=out_fmt if output is not None else None)
    rows = list(stream)
    result = {**stream.header(), "predicted": stream.predicted, "failed": stream.failed, "rows": rows}
    if output is not None:
        text = json.dumps(result, indent=2) + "\n" if out_fmt == "json" else to_csv(result)
        if out_fmt == "jsonl":
            text = "".join(jsonl_line(r) for r in rows)
        atomic_write_bytes(output, text.encode("utf-8", CSV_ERRORS))
        result["output"] = str(output)
    return result


class PredictStream:
    """Rows of predictions for a lazily discovered stream of files, in input order.

    Iterate it for {"path", "top", "error", "detail"[, "prediction", "confidence"]} dicts. Files
    are found by a scandir walk as they are needed, decoded on
    usable_cpus() threads while the model runs, predicted
    `batch_size` at a time; at most a few batches are in memory, whatever the
    number of files. `predicted` / `failed` / `skipped` count as rows go by.
    fingerprint: each row also gets "source", what the file was when it was
    read (see `read_source`), or None when it could not be read.
    """
    def __init__(self, predictor, inputs: list[str], *, model: str, names: list[str], top_k: int, batch_size: int,
                 tta: tuple[str, ...] | None, threshold: float | None, calibrate: Callable | None,
                 skip: Callable[[str], bool] | None, exclude: list[Path],
                 progress: Callable[[int, int | None], None] | None, fingerprint: bool = False,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.predictor, self.inputs, self.model, self.names = predictor, inputs, model, names
        self.top_k, self.batch_size, self.tta, self.threshold = top_k, batch_size, tta, threshold
        self.max_pixels = max_pixels
        self.calibrate, self.skip, self.exclude, self.progress = calibrate, skip, exclude, progress
        self.fingerprint = fingerprint
        self._sources: dict[str, dict | None] = {}  # path -> fingerprint, from its decode until its row leaves
        self.predicted = self.failed = self.skipped = 0
        self.total: int | None = None

    def header(self) -> dict[str, Any]:
        return {"model": self.model, "format": self.predictor.format, "image_size": self.predictor.image_size,
                "labels": self.names, "top_k": self.top_k, "tta": self.tta is not None,
                "tta_views": list(self.tta or ()), "threshold": self.threshold, "max_pixels": self.max_pixels}

    def __iter__(self) -> Iterator[dict]:
        if self.progress is not None:
            threading.Thread(target=self._count, daemon=True).start()
        done = 0
        for row in self._rows():
            done += 1
            if row["error"] is None:
                self.predicted += 1
            else:
                self.failed += 1
            if self.fingerprint:
                row["source"] = self._sources.pop(row["path"], None)
            yield row
            if self.progress is not None and (done % self.batch_size == 0 or row["error"] is not None):
                self.progress(done + self.skipped, self.total)
        if self.progress is not None:
            self.progress(done + self.skipped, done + self.skipped)

    def _count(self) -> None:
        # A second walk that only counts, so the progress bar gets a total (and an ETA) without a file list.
        self.total = sum(1 for _ in iter_inputs(self.inputs, self.exclude))

    def _rows(self) -> Iterator[dict]:
        # One chunk in flight: chunk i's rows are made after chunk i+1 is dispatched, so a
        # model on a device computes while this thread gathers the next batch.
        size = self.predictor.image_size
        chunk: list[tuple[str, Any]] = []  # (path, pixels | row dict), in input order
        n_pixels = 0
        pending = None
        for path, item in self._decoded(size):
            chunk.append((path, item))
            if not isinstance(item, dict):
                n_pixels += 1
            if n_pixels == self.batch_size:
                started = self._start_chunk(chunk)
                if pending is not None:
                    yield from self._finish_chunk(*pending)
                pending, chunk, n_pixels = started, [], 0
        if pending is not None:
            yield from self._finish_chunk(*pending)
        if chunk:
            yield from self._finish_chunk(*self._start_chunk(chunk))

    def _decoded(self, size: int) -> Iterator[tuple[str, Any]]:
        """(path, uint8 pixels) or (path, error row), in input order; decodes run ahead on threads."""
        workers = usable_cpus()
        window = 2 * self.batch_size + workers  # bounded read-ahead keeps memory flat
        pending: deque = deque()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for item in iter_inputs(self.inputs, self.exclude):
                if isinstance(item, dict):
                    if self.skip is not None and self.skip(item["path"]):
                        self.skipped += 1
                        continue
                    pending.append((item["path"], None, item))
                else:
                    if self.skip is not None and self.skip(str(item)):
                        self.skipped += 1
                        continue
                    pending.append((str(item), pool.submit(self._decode, item, size), None))
                while len(pending) >= window:
                    yield _resolve(pending.popleft())
            while pending:
                yield _resolve(pending.popleft())

    def _decode(self, path: Path, size: int):
        """uint8 pixels, or the DecodeError; with fingerprint, the file's fingerprint is kept for its row."""
        try:
            data, source = read_source(path, self.fingerprint)
        except DecodeError as e:
            return e
        if self.fingerprint:
            self._sources[str(path)] = source
        try:
            # The model's data.resize (its sidecar or run): the pixels it was trained on.
            return decode_bytes(data, size, self.max_pixels, getattr(self.predictor, "resize", "antialias"))
        except DecodeError as e:
            return e

    def _start_chunk(self, chunk: list[tuple[str, Any]]) -> tuple[list, Callable[[], Any] | None]:
        """(chunk, a function that waits for its probabilities) with the model started on its pixels."""
        pixels = [item for _, item in chunk if not isinstance(item, dict)]
        if not pixels:
            return chunk, None
        x = np.stack(pixels)
        if self.tta:
            p = predict_tta(self.predictor, x, self.tta)
            return chunk, lambda: p
        return chunk, self.predictor.submit(x)

    def _finish_chunk(self, chunk: list[tuple[str, Any]], waiter: Callable[[], Any] | None) -> Iterator[dict]:
        probs = iter(())
        if waiter is not None:
            p = waiter()
            if p.shape[1] != len(self.names):
                raise UserError(f"labels: received {len(self.names)} names; the model '{self.model}' predicts {p.shape[1]} classes")
            conf = (self.calibrate(p) if self.calibrate is not None else p).max(axis=1)
            probs = zip(np.asarray(p, np.float32), np.round(conf.astype(np.float64), 6))
        for path, item in chunk:
            if isinstance(item, dict):
                yield item
                continue
            pr, c = next(probs)
            row = {"path": path, "top": _top(pr, self.names, self.top_k), "error": None, "detail": ""}
            if self.threshold is not None:
                row["prediction"] = "unsure" if c < self.threshold else self.names[int(np.argmax(pr))]
                row["confidence"] = float(c)
            yield row


def predict_stream(
    model: str | Path, inputs: list[str], *, top_k: int = 5, batch_size: int = 32,
    labels: str | Path | None = None, tta: bool = False, threshold: float | str | None = None,
    min_precision: float | None = None, skip: Callable[[str], bool] | None = None,
    exclude: list[str | Path] = (), progress: Callable[[int, int | None], None] | None = None,
    output: str | Path | None = None, fmt: str | None = None, fingerprint: bool = False,
    max_pixels: int | None = None,
) -> PredictStream:
    """A `PredictStream` over `inputs` (files, folders, globs), checked before any file is decoded.

    threshold: top-1 probability below which a row's prediction is "unsure"
    (0 < t <= 1), or "auto" with `min_precision`: the run's threshold for that
    precision, applied to calibrated probabilities. skip(path): rows to leave
    out (resume). exclude: folders never searched (a sort destination).
    output/fmt: only checked here (not an input image, its folder exists).
    fingerprint: rows carry "source" (`read_source`), for moving files safely.
    max_pixels: files with more pixels are rows with error "too_large", never
    decoded; default: the run's data.max_pixels, or Pillow's warning level.
    tta: views from `views_for` the run's data.augment.flip (a model file: no mirror).
    """
    if top_k < 1:
        raise UserError(f"--top-k: received {top_k}; allowed: 1 or more")
    if batch_size < 1:
        raise UserError(f"--batch-size: received {batch_size}; allowed: 1 or more")
    model_path, run = resolve_model(model)
    detect_format(model_path)  # the first argument first: a folder that is no model says so before PATH is searched
    if max_pixels is not None and not 1 <= max_pixels <= PILLOW_MAX_PIXELS:
        raise UserError(f"--max-pixels: received {max_pixels}; allowed: 1 to {PILLOW_MAX_PIXELS} (Pillow refuses more)")
    if tta and threshold is not None and str(threshold).strip().lower() == "auto":
        # The temperature and thresholds were fitted on single-view probabilities;
        # averaged views are less sure, so "auto" would abstain on the wrong images.
        raise UserError("--tta with --threshold auto: the calibration was fitted without TTA and does not hold for "
                        "averaged views; allowed: --tta with --threshold NUMBER, or --threshold auto without --tta")
    if not inputs:
        raise UserError("PATH: received none; allowed: image files, folders or globs")
    excluded = [Path(e) for e in exclude]
    first = next((i for i in iter_inputs(inputs, excluded) if not isinstance(i, dict)), None)
    if first is None and skip is None:
        raise UserError(f"PATH: received {', '.join(inputs)}; found no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in them")
    if output is not None:
        check_output(Path(output), inputs, fmt or "csv")
    recipe = load_recipe(str(run.recipe), []) if run is not None else None
    if max_pixels is None:
        max_pixels = recipe.data.max_pixels if recipe is not None else DEFAULT_MAX_PIXELS
    predictor = load_predictor(model_path, batch_size=batch_size)
    calibrate, cut = confidence_rule(model, threshold, min_precision)
    names = read_labels(labels, "--labels") if labels is not None else predictor.labels
    if names is None:  # one blank image tells the class count; with labels, the first batch checks it
        n_classes = predictor(np.zeros((1, predictor.image_size, predictor.image_size, 3), np.uint8)).shape[1]
        names = [str(i) for i in range(n_classes)]
    return PredictStream(predictor, list(inputs), model=str(model), names=list(names), top_k=min(top_k, len(names)),
                         batch_size=batch_size, tta=views_for(recipe.data.augment.flip if recipe else None) if tta else None,
                         threshold=cut, calibrate=calibrate, skip=skip, exclude=excluded, progress=progress,
                         fingerprint=fingerprint, max_pixels=max_pixels)


def confidence_rule(model, threshold: float | str | None, min_precision: float | None) -> tuple[Callable | None, float | None]:
    """(calibration of probabilities (N, C) or None, threshold or None) for --threshold / --min-precision."""
    if threshold is None:
        if min_precision is not None:
            raise UserError(f"--min-precision {min_precision}: needs --threshold auto")
        return None, None
    if str(threshold).strip().lower() == "auto":
        if min_precision is None:
            raise UserError("--threshold auto: needs --min-precision P, the precision (0 < P <= 1) that images above "
                            "the threshold reach on the validation split, e.g. --threshold auto --min-precision 0.9")
        if not 0 < float(min_precision) <= 1:
            raise UserError(f"--min-precision: received {min_precision}; allowed with --threshold auto: a number in (0, 1]")

        cal = load_calibration(model)
        if cal is None:
            raise UserError(f"--threshold auto: '{model}' has no calibration (calibration.json); allowed: a calibrated run, or --threshold NUMBER in [0, 1]")
        cut = cal.threshold_for(float(min_precision))
        if cut is None:
            raise UserError(f"--min-precision {min_precision}: no confidence threshold reaches it on the validation split of '{model}'; allowed: a lower precision")
        return cal.apply, float(cut)
    if min_precision is not None:
        raise UserError(f"--min-precision {min_precision}: only with --threshold auto; received --threshold {threshold}")
    try:
        value = float(threshold)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise UserError(f"--threshold: received {threshold!r}; allowed: a number in (0, 1], or auto (with --min-precision)")
    return None, value


def _resolve(entry) -> tuple[str, Any]:
    path, future, row = entry
    if row is not None:
        return path, row
    px = future.result()
    if isinstance(px, DecodeError):
        return path, {"path": path, "top": [], "error": px.reason, "detail": px.detail}
    return path, px


def _top(probs: np.ndarray, names: list[str], k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"label": names[i], "probability": round(float(probs[i]), 6)} for i in order]
