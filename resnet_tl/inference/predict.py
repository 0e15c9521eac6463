"""Class probabilities for image files, from any model resnet-tl writes.

    predict("runs/x", ["photos/", "extra/*.jpg", "one.png"], top_k=3)

The model is a run folder (its model.keras and labels.txt), a ``.keras``
file, a SavedModel folder, a ``.tflite`` or an ``.onnx`` file
(`resnet_tl.formats.predictor.load_predictor`); every format gives the same rows.
PATHs are files, folders (searched recursively for image files; hidden files
and folders skipped) or globs. Images are decoded by
`resnet_tl.data.decode.decode_image` at the model's size, exactly as for
training, on a few threads, and predicted in batches. A file that cannot be
decoded gets a row with its reason and no prediction; the rest are still
predicted.
"""

from __future__ import annotations

import csv
import glob
import io as _io
import json
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

import numpy as np

from resnet_tl.cpus import usable_cpus
from resnet_tl.data.decode import IMAGE_EXTENSIONS, DecodeError, decode_image
from resnet_tl.errors import UserError
from resnet_tl.fileio import atomic_write_text
from resnet_tl.runs import read_labels, resolve_model
from resnet_tl.inference.tta import predict_tta

OUTPUT_FORMATS = ("table", "csv", "json", "jsonl")
STREAM_FORMATS = ("csv", "jsonl")  # written row by row; table and json are whole documents
THRESHOLD_COLUMNS = ("prediction", "confidence")  # csv columns after path when there is a threshold
_GLOB_CHARS = set("*?[")


def predict(
    model: str | Path, inputs: list[str], *, top_k: int = 5, batch_size: int = 32,
    labels: str | Path | None = None, output: str | Path | None = None, fmt: str | None = None,
    progress: Callable[[int, int | None], None] | None = None, tta: bool = False,
    threshold: float | str | None = None, min_precision: float | None = None,
) -> dict[str, Any]:
    """Top-k labels and probabilities per image, all rows in memory; with `output`, also writes it.

    For small inputs; `predict_stream` is the same thing row by row for any
    number of files. Returns {"model", "format", "image_size", "labels",
    "top_k", "tta", "threshold", "predicted", "failed", "rows": [{"path",
    "top": [{"label", "probability"}], "error", "detail"}]}, rows in input
    order. With a threshold each row also has "prediction" (the top-1 label,
    or "unsure" when its confidence is below the threshold) and "confidence"
    (top-1 probability, calibrated with --threshold auto); "top" stays the
    model's own probabilities.
    """
    out_fmt = output_format(fmt, output)
    stream = predict_stream(model, inputs, top_k=top_k, batch_size=batch_size, labels=labels, tta=tta,
                            threshold=threshold, min_precision=min_precision, progress=progress,
                            output=output, fmt=out_fmt if output is not None else None)
    rows = list(stream)
    result = {**stream.header(), "predicted": stream.predicted, "failed": stream.failed, "rows": rows}
    if output is not None:
        text = json.dumps(result, indent=2) + "\n" if out_fmt == "json" else to_csv(result)
        if out_fmt == "jsonl":
            text = "".join(jsonl_line(r) for r in rows)
        atomic_write_text(output, text)
        result["output"] = str(output)
    return result


class PredictStream:
    """Rows of predictions for a lazily discovered stream of files, in input order.

    Iterate it for {"path", "top", "error", "detail"[, "prediction", "confidence"]} dicts. Files
    are found by a scandir walk as they are needed, decoded on
    usable_cpus() threads while the model runs, predicted
    `batch_size` at a time; at most a few batches are in memory, whatever the
    number of files. `predicted` / `failed` / `skipped` count as rows go by.
    """

    def __init__(self, predictor, inputs: list[str], *, model: str, names: list[str], top_k: int, batch_size: int,
                 tta: bool, threshold: float | None, calibrate: Callable | None, skip: Callable[[str], bool] | None,
                 exclude: list[Path], progress: Callable[[int, int | None], None] | None):
        self.predictor, self.inputs, self.model, self.names = predictor, inputs, model, names
        self.top_k, self.batch_size, self.tta, self.threshold = top_k, batch_size, tta, threshold
        self.calibrate, self.skip, self.exclude, self.progress = calibrate, skip, exclude, progress
        self.predicted = self.failed = self.skipped = 0
        self.total: int | None = None

    def header(self) -> dict[str, Any]:
        return {"model": self.model, "format": self.predictor.format, "image_size": self.predictor.image_size,
                "labels": self.names, "top_k": self.top_k, "tta": self.tta, "threshold": self.threshold}

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
            yield row
            if self.progress is not None and (done % self.batch_size == 0 or row["error"] is not None):
                self.progress(done + self.skipped, self.total)
        if self.progress is not None:
            self.progress(done + self.skipped, done + self.skipped)

    def _count(self) -> None:
        # A second walk that only counts, so the progress bar gets a total (and an ETA) without a file list.
        self.total = sum(1 for _ in iter_inputs(self.inputs, self.exclude))

    def _rows(self) -> Iterator[dict]:
        size = self.predictor.image_size
        chunk: list[tuple[str, Any]] = []  # (path, pixels | row dict), in input order
        n_pixels = 0
        for path, item in self._decoded(size):
            chunk.append((path, item))
            if not isinstance(item, dict):
                n_pixels += 1
            if n_pixels == self.batch_size:
                yield from self._predict_chunk(chunk)
                chunk, n_pixels = [], 0
        if chunk:
            yield from self._predict_chunk(chunk)

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
                    pending.append((str(item), pool.submit(_decode, item, size), None))
                while len(pending) >= window:
                    yield _resolve(pending.popleft())
            while pending:
                yield _resolve(pending.popleft())

    def _predict_chunk(self, chunk: list[tuple[str, Any]]) -> Iterator[dict]:
        pixels = [item for _, item in chunk if not isinstance(item, dict)]
        probs = iter(())
        if pixels:
            x = np.stack(pixels)
            p = predict_tta(self.predictor, x) if self.tta else self.predictor(x)
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
    output: str | Path | None = None, fmt: str | None = None,
) -> PredictStream:
    """A `PredictStream` over `inputs` (files, folders, globs), checked before any file is decoded.

    threshold: top-1 probability below which a row's prediction is "unsure"
    (0 < t <= 1), or "auto" with `min_precision`: the run's threshold for that
    precision, applied to calibrated probabilities. skip(path): rows to leave
    out (resume). exclude: folders never searched (a sort destination).
    output/fmt: only checked here (not an input image, its folder exists).
    """
    from resnet_tl.formats.predictor import load_predictor

    if top_k < 1:
        raise UserError(f"--top-k: received {top_k}; allowed: 1 or more")
    if batch_size < 1:
        raise UserError(f"--batch-size: received {batch_size}; allowed: 1 or more")
    if not inputs:
        raise UserError("PATH: received none; allowed: image files, folders or globs")
    excluded = [Path(e) for e in exclude]
    first = next((i for i in iter_inputs(inputs, excluded) if not isinstance(i, dict)), None)
    if first is None and skip is None:
        raise UserError(f"PATH: received {', '.join(inputs)}; found no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in them")
    if output is not None:
        check_output(Path(output), inputs, fmt or "csv")
    model_path, _ = resolve_model(model)
    predictor = load_predictor(model_path, batch_size=batch_size)
    calibrate, cut = confidence_rule(model, threshold, min_precision)
    names = read_labels(labels, "--labels") if labels is not None else predictor.labels
    if names is None:  # one blank image tells the class count; with labels, the first batch checks it
        n_classes = predictor(np.zeros((1, predictor.image_size, predictor.image_size, 3), np.uint8)).shape[1]
        names = [str(i) for i in range(n_classes)]
    return PredictStream(predictor, list(inputs), model=str(model), names=list(names), top_k=min(top_k, len(names)),
                         batch_size=batch_size, tta=tta, threshold=cut, calibrate=calibrate, skip=skip,
                         exclude=excluded, progress=progress)


def confidence_rule(model, threshold: float | str | None, min_precision: float | None) -> tuple[Callable | None, float | None]:
    """(calibration of probabilities (N, C) or None, threshold or None) for --threshold / --min-precision."""
    if threshold is None:
        if min_precision is not None:
            raise UserError(f"--min-precision {min_precision}: needs --threshold auto")
        return None, None
    if str(threshold).strip().lower() == "auto":
        if min_precision is None or not 0 < float(min_precision) <= 1:
            raise UserError(f"--min-precision: received {min_precision}; allowed with --threshold auto: a number in (0, 1]")
        from resnet_tl.inference.calibration import load_calibration

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


def _decode(path: Path, size: int):
    try:
        return decode_image(path, size)
    except DecodeError as e:
        return e


def _top(probs: np.ndarray, names: list[str], k: int) -> list[dict]:
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"label": names[i], "probability": round(float(probs[i]), 6)} for i in order]


# ------------------------------------------------------------------- inputs
def iter_inputs(inputs: list[str], exclude: list[Path] = ()) -> Iterator[Path | dict]:
    """Image files in input order, lazily and without repeats, or a not_found row for an input that matched nothing.

    A file named explicitly is always tried (its decode error is its row);
    folders (scandir walk, sorted per folder, hidden entries skipped) and
    globs contribute files with an image extension. Memory does not grow with
    the number of files under a folder: repeats are avoided by remembering
    the folders walked and the files named, not every file found.
    """
    excluded = {Path(os.path.abspath(e)) for e in exclude}
    walked: list[Path] = []
    named: set[Path] = set()

    def inside_walked(p: Path) -> bool:
        a = Path(os.path.abspath(p))
        return any(w == a or w in a.parents for w in walked)

    def walk(folder: Path) -> Iterator[Path]:
        root = Path(os.path.abspath(folder))
        if inside_walked(root) or root in excluded or any(e in root.parents for e in excluded):
            return
        yield from (f for f in _walk(folder, root, excluded | set(walked)) if Path(os.path.abspath(f)) not in named)
        walked.append(root)

    def file(p: Path) -> Iterator[Path]:
        a = Path(os.path.abspath(p))
        if a in named or (inside_walked(a) and _walkable(a.name)):
            return
        named.add(a)
        yield p

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            yield from walk(p)
        elif p.exists():
            yield from file(p)
        elif _GLOB_CHARS & set(item):
            matched = False
            for m in map(Path, glob.iglob(item, recursive=True)):
                matched = True
                if m.is_dir():
                    yield from walk(m)
                elif m.suffix.lower() in IMAGE_EXTENSIONS:
                    yield from file(m)
            if not matched:
                yield {"path": item, "top": [], "error": "not_found", "detail": "the glob matched nothing"}
        else:
            yield {"path": item, "top": [], "error": "not_found", "detail": "no such file or folder"}


def collect_inputs(inputs: list[str]) -> tuple[list[Path], list[dict]]:
    """(image files in input order without repeats, rows for inputs that matched nothing); UserError when no file."""
    if not inputs:
        raise UserError("PATH: received none; allowed: image files, folders or globs")
    files, missing = [], []
    for item in iter_inputs(inputs):
        (missing if isinstance(item, dict) else files).append(item)
    if not files:
        raise UserError(f"PATH: received {', '.join(inputs)}; found no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in them")
    return files, missing


def _walkable(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _walk(folder: Path, absolute: Path, skip_dirs: set[Path]) -> Iterator[Path]:
    """Depth-first, each folder's entries sorted by name; only one folder's listing in memory per level."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(((e.name, e.is_dir(follow_symlinks=True)) for e in it if not e.name.startswith(".")))
    except OSError:
        return
    for name, is_dir in entries:
        if is_dir:
            sub = absolute / name
            if sub not in skip_dirs:
                yield from _walk(folder / name, sub, skip_dirs)
        elif _walkable(name):
            yield folder / name


# ------------------------------------------------------------------- output
def output_format(fmt: str | None, output: str | Path | None) -> str:
    """The format asked for, else the --output file's suffix (.json -> json, .jsonl -> jsonl, else csv), else table."""
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise UserError(f"--format: received {fmt!r}; allowed: {', '.join(OUTPUT_FORMATS)}")
    if output is None:
        return fmt or "table"
    if fmt == "table":
        raise UserError("--format table: prints to the terminal; allowed with --output: csv, jsonl, json")
    suffix = Path(output).suffix.lower()
    return fmt or {".json": "json", ".jsonl": "jsonl"}.get(suffix, "csv")


def check_output(output: Path, inputs: list, fmt: str) -> None:
    """Refuse an --output that is a folder, lacks its folder, is an image name, or is one of the inputs named."""
    if output.is_dir():
        raise UserError(f"--output '{output}': is a folder; allowed: a file name")
    if not output.resolve().parent.is_dir():
        raise UserError(f"--output '{output}': the folder '{output.parent}' does not exist")
    if output.suffix.lower() in IMAGE_EXTENSIONS:
        raise UserError(f"--output '{output}': an image file name; allowed: a .{fmt} (or other non-image) file")
    target = output.resolve()
    for p in inputs:
        if Path(p).resolve() == target:
            raise UserError(f"--output '{output}': is one of the input images; allowed: a new file name")


def csv_header(k: int, extra: tuple[str, ...] = ()) -> list[str]:
    """path, [extra...], label_1, probability_1, ..., label_k, probability_k, error, detail."""
    return ["path", *extra, *[f"{c}_{i}" for i in range(1, k + 1) for c in ("label", "probability")], "error", "detail"]


def csv_cells(row: dict, k: int, extra: tuple[str, ...] = ()) -> list[str]:
    cells = []
    for i in range(k):
        t = row["top"][i] if i < len(row["top"]) else None
        cells += [t["label"], f"{t['probability']:.6f}"] if t else ["", ""]
    ext = [_cell(row.get(e)) for e in extra]
    return [row["path"], *ext, *cells, row["error"] or "", row["detail"] or ""]


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6f}"
    return str(v)


def to_csv(result: dict) -> str:
    """The rows of a `predict` result as CSV (see `csv_header`; prediction, confidence with a threshold)."""
    k = result["top_k"]
    extra = THRESHOLD_COLUMNS if result.get("threshold") is not None else ()
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_header(k, extra))
    for r in result["rows"]:
        w.writerow(csv_cells(r, k, extra))
    return buf.getvalue()


def jsonl_line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=True) + "\n"


def write_stream(stream: PredictStream, fmt: str, output: str | Path | None = None, *, resume: bool = False,
                 stdout: TextIO | None = None) -> dict[str, Any]:
    """Write `stream`'s rows as csv or jsonl, flushed after every batch, to `output` (or `stdout`).

    resume: keep the rows already in `output` (a run killed at any point
    leaves at most one partial last line, which is cut) and predict only the
    files it lacks. Returns the stream's header with the counts.
    """
    if fmt not in STREAM_FORMATS:
        raise UserError(f"--format {fmt}: not written row by row; allowed: {', '.join(STREAM_FORMATS)}")
    extra = THRESHOLD_COLUMNS if stream.threshold is not None else ()
    header = csv_header(stream.top_k, extra)
    done: set[str] = set()
    if output is not None and resume and Path(output).is_file():
        done = _rows_done(Path(output), fmt, header)
        stream.skip = _chain_skip(stream.skip, done)
    elif resume and output is None:
        raise UserError("--resume: needs --output FILE (the file to continue)")
    f = stdout if output is None else open(output, "a" if done or (resume and Path(output).is_file()) else "w", newline="", encoding="utf-8")
    try:
        w = csv.writer(f, lineterminator="\n")
        if fmt == "csv" and (output is None or f.tell() == 0):
            w.writerow(header)
        for n, row in enumerate(stream, start=1):
            if fmt == "csv":
                w.writerow(csv_cells(row, stream.top_k, extra))
            else:
                f.write(jsonl_line(row))
            if n % stream.batch_size == 0:
                f.flush()
        f.flush()
    finally:
        if output is not None:
            f.close()
    return {**stream.header(), "predicted": stream.predicted, "failed": stream.failed,
            "resumed": stream.skipped, "output": str(output) if output is not None else None}


def _chain_skip(skip, done: set[str]):
    if skip is None:
        return done.__contains__
    return lambda p: p in done or skip(p)


def _rows_done(path: Path, fmt: str, header: list[str]) -> set[str]:
    """Paths already in an output file; cuts a partial last line (a killed writer) first."""
    with open(path, "rb+") as f:
        data_end = f.seek(0, os.SEEK_END)
        # Find the last newline from the end, a block at a time, so a huge file is not read twice.
        pos, cut = data_end, 0
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            block = f.read(step)
            j = block.rfind(b"\n")
            if j >= 0:
                cut = pos - step + j + 1
                break
            pos -= step
        if cut != data_end:
            f.truncate(cut)
    done: set[str] = set()
    with open(path, newline="", encoding="utf-8") as f:
        if fmt == "csv":
            reader = csv.reader(f)
            first = next(reader, None)
            if first is not None and first != header:
                raise UserError(f"--resume '{path}': its columns {first[:4]}... differ from this run's {header[:4]}...; "
                                "allowed: the same --top-k, --threshold and --format as the run that wrote it")
            done.update(r[0] for r in reader if r)
        else:
            for line in f:
                try:
                    done.add(json.loads(line)["path"])
                except (ValueError, KeyError, TypeError):
                    raise UserError(f"--resume '{path}': not a JSON Lines predictions file (line {line[:60]!r})") from None
    return done
