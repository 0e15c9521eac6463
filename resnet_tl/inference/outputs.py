"""Prediction rows as files: table/csv/json/jsonl formats, streamed csv/jsonl writing, resume.

File names that are not valid UTF-8 (Python holds their bytes as lone
surrogates) are written as their own bytes in csv (as `ls` and `find` print
them: read the file back with ``errors="surrogateescape"``) and as ``\\udcXX``
escapes in JSON, so both round-trip to the exact name; --resume recognises them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, TextIO

from resnet_tl.data.decode import IMAGE_EXTENSIONS
from resnet_tl.errors import UserError
from resnet_tl.inference.inputs import canonical

OUTPUT_FORMATS = ("table", "csv", "json", "jsonl")
STREAM_FORMATS = ("csv", "jsonl")  # written row by row; table and json are whole documents
THRESHOLD_COLUMNS = ("prediction", "confidence")  # csv columns after path when there is a threshold
CSV_ERRORS = "surrogateescape"  # a file name's undecodable bytes go out (and come back) as they are


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
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_header(k, extra))
    for r in result["rows"]:
        w.writerow(csv_cells(r, k, extra))
    return buf.getvalue()


def jsonl_line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=True) + "\n"


def write_stream(stream, fmt: str, output: str | Path | None = None, *, resume: bool = False,
                 stdout: TextIO | None = None) -> dict[str, Any]:
    """Write `stream`'s rows as csv or jsonl, flushed after every batch, to `output` (or `stdout`).

    resume: keep the rows already in `output` (a run killed at any point
    leaves at most one partial last line, which is cut) and predict only the
    files it lacks, matched by `canonical` path (relative rows are read from
    the current folder), however the PATHs are typed this time. Returns the
    stream's header with the counts.
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
    if output is None:
        f = stdout
        if hasattr(f, "reconfigure"):
            f.reconfigure(errors=CSV_ERRORS)
    else:
        f = open(output, "a" if done or (resume and Path(output).is_file()) else "w", newline="", encoding="utf-8", errors=CSV_ERRORS)
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
    cache: dict[str, str] = {}

    def resumed(p: str) -> bool:
        return canonical(p, cache) in done or (skip is not None and skip(p))
    return resumed


def _rows_done(path: Path, fmt: str, header: list[str]) -> set[str]:
    """Canonical paths already in an output file; cuts a partial last line (a killed writer) first."""
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
    cache: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8", errors=CSV_ERRORS) as f:
        if fmt == "csv":
            reader = csv.reader(f)
            first = next(reader, None)
            if first is not None and first != header:
                raise UserError(f"--resume '{path}': its columns {first[:4]}... differ from this run's {header[:4]}...; "
                                "allowed: the same --top-k, --threshold and --format as the run that wrote it")
            done.update(canonical(r[0], cache) for r in reader if r)
        else:
            for line in f:
                try:
                    done.add(canonical(json.loads(line)["path"], cache))
                except (ValueError, KeyError, TypeError):
                    raise UserError(f"--resume '{path}': not a JSON Lines predictions file (line {line[:60]!r})") from None
    return done
