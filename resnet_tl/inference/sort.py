"""Sort image files into class folders, safely enough to kill at any moment.

    classify_folder("runs/x", ["photos/"], "sorted/", mode="move", threshold=0.8)

writes ``sorted/<class>/<file>``, ``sorted/_unsure/`` (top-1 probability
below the threshold), ``sorted/_unreadable/`` (with ``<file>.reason.txt``)
and ``sorted/predictions.csv`` (path, dest, [prediction, confidence,] top-k,
error, detail).
A name already taken gets ``_1``, ``_2``, ... before its suffix; no file is
ever overwritten. Sources are untouched unless mode is ``move``.

Every file goes through a journal (``sorted/.resnet-tl-journal.jsonl``): a
"begin" line naming source and destination, fsync'ed before anything is
touched, then the copy (to a hidden temporary name, fsync'ed, renamed into
place, folder fsync'ed), then for a move the unlink of the source, then a
"done" line with the prediction. A re-run first finishes every "begin"
without "done" from what is on disk (destination there: the copy finished;
source still there: unlink it for a move), then skips every source already
done, so running the same command twice does nothing new and a kill at any
point loses and duplicates nothing. predictions.csv is rebuilt from the
journal at the end of each run.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

from resnet_tl import faults
from resnet_tl.errors import UserError
from resnet_tl.fileio import atomic_path, atomic_write_text, fsync_dir
from resnet_tl.inference.outputs import csv_cells, csv_header
from resnet_tl.inference.predict import PredictStream, predict_stream

MODES = ("copy", "link", "move")
UNSURE = "_unsure"
UNREADABLE = "_unreadable"
JOURNAL = ".resnet-tl-journal.jsonl"
PREDICTIONS = "predictions.csv"
_EXTRA = ("dest", "prediction", "confidence")


def classify_folder(
    model: str | Path, inputs: list[str], dest: str | Path, *, mode: str = "copy", top_k: int = 5,
    batch_size: int = 32, labels: str | Path | None = None, tta: bool = False,
    threshold: float | str | None = None, min_precision: float | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> dict[str, Any]:
    """Predict `inputs` and sort them into `dest` (see the module docstring); safe to re-run.

    Returns {"dest", "mode", "predictions", "sorted": {class: n}, "unsure",
    "unreadable", "not_found", "already_done", "recovered", ...stream header}.
    """
    if mode not in MODES:
        raise UserError(f"--mode: received {mode!r}; allowed: {', '.join(MODES)}")
    sorter = Sorter(dest, mode)
    try:
        stream = predict_stream(model, inputs, top_k=top_k, batch_size=batch_size, labels=labels, tta=tta,
                                threshold=threshold, min_precision=min_precision, skip=sorter.already_done,
                                exclude=[sorter.dest], progress=progress)
    except BaseException:
        sorter.close()
        raise
    return {**stream.header(), **sorter.run(stream)}


class Sorter:
    """Places predicted files under `dest` through the journal; `run(stream)` does a whole job."""

    def __init__(self, dest: str | Path, mode: str):
        self.dest = Path(dest)
        self.mode = mode
        if self.dest.exists() and not self.dest.is_dir():
            raise UserError(f"--sort-into '{dest}': is a file; allowed: a folder (created if missing)")
        self.dest.mkdir(parents=True, exist_ok=True)
        self.journal_path = self.dest / JOURNAL
        self.done: set[str] = set()
        self.pending: dict[str, dict] = {}
        self._read_journal()
        self._journal = open(self.journal_path, "a", encoding="utf-8")
        self.counts: dict[str, int] = {}

    def close(self) -> None:
        self._journal.close()

    def already_done(self, path: str) -> bool:
        return _key(path) in self.done

    def run(self, stream: PredictStream) -> dict[str, Any]:
        recovered = self.recover()
        try:
            for row in stream:
                self.place(row)
        finally:
            self.close()
            self.write_predictions(stream.top_k)
        return {"dest": str(self.dest), "mode": self.mode, "predictions": str(self.dest / PREDICTIONS),
                "placed": dict(sorted(self.counts.items())), "predicted": stream.predicted, "failed": stream.failed,
                "already_done": stream.skipped, "recovered": recovered}

    # ---------------------------------------------------------------- placing
    def place(self, row: dict) -> None:
        """Copy, link or move one predicted file to its folder; a not_found row is only recorded."""
        src = row["path"]
        if row["error"] == "not_found":
            self._log({"op": "done", "src": _key(src), "row": {**row, "dest": ""}}, sync=False)
            self.done.add(_key(src))
            self._count("not_found")
            return
        folder = self._folder_for(row)
        dst = _free_name(self.dest / folder, Path(src).name)
        row = {**row, "dest": str(dst.relative_to(self.dest))}
        entry = {"op": "begin", "src": _key(src), "dst": str(dst), "mode": self.mode, "row": row}
        self._log(entry, sync=True)
        faults.point("sort_begin")
        self._finish(entry)
        self._count(folder)

    def _folder_for(self, row: dict) -> str:
        if row["error"] is not None:
            return UNREADABLE
        if row.get("prediction") == "unsure":
            return UNSURE
        return _safe_folder(row["top"][0]["label"])

    def _finish(self, entry: dict) -> None:
        src, dst, mode = Path(entry["src"]), Path(entry["dst"]), entry["mode"]
        row = entry["row"]
        if not dst.exists() and not os.path.islink(dst):
            if not src.exists():  # removed by someone else between the runs: record it, place nothing
                row = {**row, "dest": "", "top": [], "error": "not_found", "detail": "vanished before it was sorted"}
                self._log({"op": "done", "src": entry["src"], "row": row}, sync=False)
                self.done.add(entry["src"])
                self.pending.pop(entry["src"], None)
                return
            dst.parent.mkdir(parents=True, exist_ok=True)
            if row["error"] is not None:
                atomic_write_text(dst.with_name(dst.name + ".reason.txt"), f"{row['error']}: {row['detail']}\n")
            if mode == "link":
                _link(src, dst)
            else:
                _copy(src, dst)
        faults.point("sort_copied")
        if mode == "move" and src.exists() and not _same_file(src, dst):
            src.unlink()
            fsync_dir(src.parent)
        faults.point("sort_unlinked")
        self._log({"op": "done", "src": entry["src"], "row": row}, sync=False)
        self.done.add(entry["src"])
        self.pending.pop(entry["src"], None)

    def recover(self) -> int:
        """Finish what a killed run began; returns how many files that was."""
        n = 0
        for entry in list(self.pending.values()):
            self._finish(entry)
            n += 1
        return n

    # ---------------------------------------------------------------- journal
    def _read_journal(self) -> None:
        if not self.journal_path.is_file():
            return
        good = 0
        with open(self.journal_path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # a line cut by a kill: its file was not touched yet (begin is written before acting)
                try:
                    e = json.loads(raw)
                except ValueError:
                    break
                good += len(raw)
                if e["op"] == "begin":
                    self.pending[e["src"]] = e
                else:
                    self.pending.pop(e["src"], None)
                    self.done.add(e["src"])
        if good != self.journal_path.stat().st_size:
            os.truncate(self.journal_path, good)

    def _log(self, entry: dict, sync: bool) -> None:
        self._journal.write(json.dumps(entry, ensure_ascii=True) + "\n")
        self._journal.flush()
        if sync:
            os.fsync(self._journal.fileno())

    def write_predictions(self, top_k: int) -> None:
        """predictions.csv from the journal's done lines, atomically (one row per file ever sorted here)."""
        with atomic_path(self.dest / PREDICTIONS) as tmp, open(tmp, "w", newline="", encoding="utf-8") as out:
            w = csv.writer(out, lineterminator="\n")
            w.writerow(csv_header(top_k, _EXTRA))
            with open(self.journal_path, encoding="utf-8") as f:
                for line in f:
                    e = json.loads(line)
                    if e["op"] == "done":
                        w.writerow(csv_cells(e["row"], top_k, _EXTRA))

    def _count(self, folder: str) -> None:
        self.counts[folder] = self.counts.get(folder, 0) + 1


def _key(path: str) -> str:
    return os.path.abspath(path)


def _safe_folder(label: str) -> str:
    """A class name as one folder name: no separators, not hidden, not one of ours."""
    name = label.replace(os.sep, "_").replace("/", "_").strip() or "_"
    if name.startswith(".") or name in (UNSURE, UNREADABLE):
        name = "_" + name
    return name


def _free_name(folder: Path, name: str) -> Path:
    """folder/name, or folder/stem_N.suffix for the first N that no file (or reason sidecar) has."""
    p = Path(name)
    candidate, n = folder / name, 0
    while candidate.exists() or os.path.islink(candidate) or candidate.with_name(candidate.name + ".reason.txt").exists():
        n += 1
        candidate = folder / f"{p.stem}_{n}{p.suffix}"
    return candidate


def _copy(src: Path, dst: Path) -> None:
    # atomic_path: a hidden temporary name, fsync'ed, renamed into place, folder fsync'ed;
    # dst exists only once it is complete and durable, so a move may then unlink the source.
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
        shutil.copystat(src, tmp)


def _link(src: Path, dst: Path) -> None:
    """A hard link (same bytes, no space); a symbolic link to the absolute source across filesystems."""
    tmp = dst.with_name(f".{dst.name}.partial-link")
    if os.path.lexists(tmp):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        os.symlink(os.path.abspath(src), tmp)
    os.replace(tmp, dst)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False

