"""Sort image files into class folders, as safely as `mv`: kill it at any moment, run two at once.

    classify_folder("runs/x", ["photos/"], "sorted/", mode="move", threshold=0.8)

writes ``sorted/<class>/<file>``, ``sorted/_unsure/`` (top-1 probability
below the threshold), ``sorted/_unreadable/`` (with ``<file>.reason.txt``)
and ``sorted/predictions.csv`` (path, dest, [prediction, confidence,] top-k,
error, detail). Sources are untouched unless mode is ``move``.

Safety, step by step (`sort_journal`, `sort_place`):

- One run per DIR: a lock on ``DIR/.resnet-tl.lock``; a second run stops with one line.
- Every file is read once, for prediction, with a fingerprint (inode, size,
  mtime, sha256). A journal "begin" line (fsync'ed) names the source and
  its destination before anything is touched.
- Names in DIR are created exclusively (a link, never a replace): a name
  taken meanwhile gets the next free one (``_1``, ``_2``, ... before the
  suffix), journaled before it is used. Nothing is ever overwritten.
- A move is a hard link plus an unlink when the source and DIR share a
  filesystem (the inode moves, no copy); else a copy to a temporary name,
  fsync'ed, whose bytes must hash to the fingerprint, linked into place and
  hashed again before the source is unlinked. A source that changed since
  it was read is refused.
- A file that cannot be sorted gets a "failed" line with the reason and
  stays where it was; the run goes on. Later runs skip it until it changes.
- A re-run first finishes every "begin" without an outcome, from what is on
  disk (a destination counts as the copy only if it is that inode or has
  the recorded size and sha256), then skips every source already done
  (same path, size, mtime and inode, or same sha256), so running the same
  command twice does nothing new. predictions.csv is rebuilt from the
  journal at the end of each run.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Callable

from resnet_tl import faults
from resnet_tl.errors import UserError
from resnet_tl.fileio import atomic_path, atomic_write_bytes, fsync_dir
from resnet_tl.inference.inputs import canonical
from resnet_tl.inference.outputs import CSV_ERRORS, csv_cells, csv_header
from resnet_tl.inference.predict import PredictStream, predict_stream
from resnet_tl.inference.sort_journal import DirLock, Journal
from resnet_tl.inference.sort_place import (
    Changed,
    Refused,
    check_source,
    copy_to,
    file_state,
    is_copy_of,
    link_source,
    publish,
    remove,
    same_file,
    sha256_file,
    state_fp,
    unchanged,
    unlink_source,
)

MODES = ("copy", "link", "move")
UNSURE = "_unsure"
UNREADABLE = "_unreadable"
PREDICTIONS = "predictions.csv"
_EXTRA = ("dest", "prediction", "confidence")


def classify_folder(
    model: str | Path, inputs: list[str], dest: str | Path, *, mode: str = "copy", top_k: int = 5,
    batch_size: int = 32, labels: str | Path | None = None, tta: bool = False,
    threshold: float | str | None = None, min_precision: float | None = None,
    progress: Callable[[int, int | None], None] | None = None, max_pixels: int | None = None,
) -> dict[str, Any]:
    """Predict `inputs` and sort them into `dest` (see the module docstring); safe to re-run.

    Returns {"dest", "mode", "predictions", "placed": {folder: n}, "predicted",
    "unreadable" (in _unreadable/), "failed" (files left where they were, this
    run), "failures": [{"path", "reason"}], "failed_before" (unchanged since
    they failed, not tried again), "already_done", "recovered", ...stream header}.
    """
    if mode not in MODES:
        raise UserError(f"--mode: received {mode!r}; allowed: {', '.join(MODES)}")
    sorter = Sorter(dest, mode)
    try:
        stream = predict_stream(model, inputs, top_k=top_k, batch_size=batch_size, labels=labels, tta=tta,
                                threshold=threshold, min_precision=min_precision, skip=sorter.already_done,
                                exclude=[sorter.dest], progress=progress, fingerprint=True,
                                max_pixels=max_pixels)
        return {**stream.header(), **sorter.run(stream)}
    finally:
        sorter.close()


class Sorter:
    """Places predicted files under `dest` through the journal; `run(stream)` does a whole job.

    Holds DIR's lock from creation to `close()`.
    """

    def __init__(self, dest: str | Path, mode: str):
        self.dest = Path(os.path.abspath(dest))
        self.mode = mode
        if self.dest.exists() and not self.dest.is_dir():
            raise UserError(f"--sort-into '{dest}': is a file; allowed: a folder (created if missing)")
        self.dest.mkdir(parents=True, exist_ok=True)
        self.lock = DirLock(self.dest)
        try:
            self.journal = Journal(self.dest)
        except BaseException:
            self.lock.release()
            raise
        self.counts: dict[str, int] = {}
        self.failures: list[dict] = []
        self.failed_before = 0
        self._failed_now: set[int] = set()  # ids of this run's failures (their files are not "failed before")
        self._canon: dict[str, str] = {}

    def close(self) -> None:
        self.journal.close()
        self.lock.release()

    def already_done(self, path: str) -> bool:
        """Whether `path` is a file sorted here before (still as it was), or one that failed and has not changed."""
        src = canonical(path, self._canon)
        fps, failed = self.journal.done.get(src), self.journal.failed.get(src)
        if fps is None and failed is None:
            return False
        st = file_state(src)
        if fps and any(_same_as_done(fp, st, src) for fp in fps):
            return True
        if failed is not None and unchanged(st, failed["fp"], strict=True):
            self.failed_before += failed["id"] not in self._failed_now
            return True
        return False

    def run(self, stream: PredictStream) -> dict[str, Any]:
        recovered = self.recover()
        try:
            for row in stream:
                self.place(row)
        finally:
            self.write_predictions(stream.top_k)
        return {"dest": str(self.dest), "mode": self.mode, "predictions": str(self.dest / PREDICTIONS),
                "placed": dict(sorted(self.counts.items())), "predicted": stream.predicted,
                "unreadable": stream.failed, "failed": len(self.failures), "failures": self.failures,
                "failed_before": self.failed_before, "already_done": stream.skipped - self.failed_before,
                "recovered": recovered}

    def recover(self) -> int:
        """Finish what a killed run began; returns how many files that was."""
        pending = list(self.journal.pending.values())
        for entry in pending:
            self._finish(entry)
        return len(pending)

    # ---------------------------------------------------------------- placing
    def place(self, row: dict) -> None:
        """Copy, link or move one predicted file to its folder; a not_found row is only recorded."""
        fp = row.pop("source", None)
        src = canonical(row["path"], self._canon)
        if row["error"] == "not_found":
            self.journal.append({"op": "done", "id": self.journal.new_id(), "src": src, "fp": None,
                                 "row": {**row, "dest": ""}})
            self._count("not_found")
            return
        if fp is None:  # not readable: a link can still move it; the inode identifies it
            st = file_state(src)
            fp = state_fp(st) if st is not None else None
        folder = self._folder_for(row)
        entry_id = self.journal.new_id()
        self.journal.append({"op": "begin", "id": entry_id, "src": src, "dst": self._free_name(folder, Path(src).name),
                             "tmp": os.path.join(folder, f".resnet-tl-{entry_id}.partial"), "mode": self.mode,
                             "fp": fp, "row": row}, sync=True)
        faults.point("sort_begin")
        self._finish(self.journal.pending[entry_id])

    def _folder_for(self, row: dict) -> str:
        if row["error"] is not None:
            return UNREADABLE
        if row.get("prediction") == "unsure":
            return UNSURE
        return _safe_folder(row["top"][0]["label"])

    def _finish(self, e: dict) -> None:
        """Bring one begun entry to done or failed, from whatever state a kill left it in."""
        try:
            row = self._complete(e)
        except _Vanished:
            row = {**e["row"], "dest": "", "top": [], "error": "not_found", "detail": "vanished before it was sorted"}
            self.journal.append({"op": "done", "id": e["id"], "src": e["src"], "fp": None, "row": row})
            self._count("not_found")
        except (Refused, OSError) as ex:
            reason = str(ex) if isinstance(ex, Refused) else f"{type(ex).__name__}: {ex.strerror or ex}"
            kept = getattr(ex, "kept", "")
            st = file_state(e["src"])
            # A file that changed is recorded as it was read, so that its new version is tried by the next run.
            fp = e["fp"] if isinstance(ex, Changed) or st is None else state_fp(st)
            self.journal.append({"op": "failed", "id": e["id"], "src": e["src"], "fp": fp, "reason": reason,
                                 "row": {**e["row"], "dest": kept}})
            self.failures.append({"path": e["row"]["path"], "reason": reason})
            self._failed_now.add(e["id"])
        else:
            self.journal.append({"op": "done", "id": e["id"], "src": e["src"], "fp": e["fp"], "row": row})
            self._count(str(Path(e["dst"]).parent))
        finally:
            remove(self.dest / e["tmp"])

    def _complete(self, e: dict) -> dict:
        src, fp, mode = e["src"], e["fp"], e["mode"]
        dst = self.dest / e["dst"]
        if not (os.path.lexists(dst) and self._ours(e, dst)):
            if os.path.lexists(dst):
                self._next_name(e)  # someone else's file: never taken for our copy
            if file_state(src) is None:
                raise _Vanished()
            check_source(src, fp)
            self._place(e)
            dst = self.dest / e["dst"]
        if e["row"]["error"] is not None:
            atomic_write_bytes(_reason_file(dst), f"{e['row']['error']}: {e['row']['detail']}\n".encode("utf-8", CSV_ERRORS))
        faults.point("sort_copied")
        if mode == "move":
            self._unlink_source(e, dst)
        faults.point("sort_unlinked")
        return {**e["row"], "dest": e["dst"]}

    def _ours(self, e: dict, dst: Path) -> bool:
        """Whether `dst` is this entry's file: the source's inode, our symbolic link, or bytes with its size and sha256."""
        src, fp = e["src"], e["fp"]
        if e["mode"] == "link":
            return same_file(src, dst) or (os.path.islink(dst) and os.readlink(dst) == src)
        return same_file(src, dst) or unchanged(file_state(dst), fp) or is_copy_of(dst, fp)

    def _place(self, e: dict) -> None:
        src, fp = e["src"], e["fp"]
        if e["mode"] in ("link", "move") and self._exclusively(e, lambda dst: link_source(src, dst)):
            dst = self.dest / e["dst"]
            if e["mode"] == "move" and not (same_file(src, dst) and unchanged(file_state(dst), fp)):
                remove(dst)
                raise Changed("it changed while it was being moved")
            return
        if e["mode"] == "link":  # another filesystem: a symbolic link to the absolute source
            self._exclusively(e, lambda dst: os.symlink(src, dst))
            fsync_dir((self.dest / e["dst"]).parent)
            return
        tmp = self.dest / e["tmp"]
        tmp.parent.mkdir(parents=True, exist_ok=True)
        copy_to(src, tmp, fp)
        self._exclusively(e, lambda dst: publish(tmp, dst))

    def _exclusively(self, e: dict, create: Callable[[Path], Any]) -> Any:
        """create(dst) at the entry's destination; where that name is taken, the next free one (journaled first)."""
        while True:
            dst = self.dest / e["dst"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                return create(dst)
            except FileExistsError:
                self._next_name(e)

    def _next_name(self, e: dict) -> None:
        folder, name = os.path.split(e["dst"])
        self.journal.append({"op": "dest", "id": e["id"], "dst": self._free_name(folder, name)}, sync=True)

    def _unlink_source(self, e: dict, dst: Path) -> None:
        """Unlink a moved source, once DIR's file is verified to be it (its inode, or its size and sha256)."""
        src, fp = e["src"], e["fp"]
        st = file_state(src)
        if st is None:
            return  # unlinked before a kill
        if not same_file(src, dst):
            if not is_copy_of(dst, fp):
                raise Refused(f"its copy {e['dst']} in DIR does not match the bytes read; left in place")
            if not unchanged(st, fp):
                raise Changed(f"it changed after it was copied; the copy of the version read is kept as {e['dst']}",
                              kept=e["dst"])
        try:
            unlink_source(src)
        except OSError as ex:
            remove(dst)  # the same inode, or a verified copy of the source still there
            remove(_reason_file(dst))
            raise Refused(f"it could not be removed from its folder ({ex.strerror or ex}); left in place") from None

    # ---------------------------------------------------------------- output
    def write_predictions(self, top_k: int) -> None:
        """predictions.csv from the journal: one row per file sorted here, and per file that failed (dest empty,
        error "not_sorted", the reason as detail) unless a later run sorted it."""
        with atomic_path(self.dest / PREDICTIONS) as tmp, \
                open(tmp, "w", newline="", encoding="utf-8", errors=CSV_ERRORS) as out:
            w = csv.writer(out, lineterminator="\n")
            w.writerow(csv_header(top_k, _EXTRA))
            for e in self.journal.entries():
                if e["op"] == "done":
                    w.writerow(csv_cells(e["row"], top_k, _EXTRA))
                elif e["op"] == "failed" and self.journal.failed.get(e["src"], {}).get("id") == e["id"]:
                    w.writerow(csv_cells({**e["row"], "error": "not_sorted", "detail": e["reason"]}, top_k, _EXTRA))

    def _count(self, folder: str) -> None:
        self.counts[folder] = self.counts.get(folder, 0) + 1

    def _free_name(self, folder: str, name: str) -> str:
        """folder/name (relative to DIR), or folder/stem_N.suffix for the first N that no file (or reason sidecar) has."""
        p = Path(name)
        candidate, n = os.path.join(folder, name), 0
        while os.path.lexists(self.dest / candidate) or os.path.lexists(_reason_file(self.dest / candidate)):
            n += 1
            candidate = os.path.join(folder, f"{p.stem}_{n}{p.suffix}")
        return candidate


class _Vanished(Exception):
    """The source is gone and nothing of it is in DIR: someone removed it between the runs."""


def _same_as_done(fp: dict | None, st: os.stat_result | None, path: str) -> bool:
    """Whether the file at `path` (stat `st`) is the one recorded done with `fp`: same size and mtime, and the same
    inode or the same sha256 (a copy restored elsewhere); a recorded not_found matches a path still missing."""
    if fp is None:
        return st is None
    if st is None or "size" not in fp or (st.st_size, st.st_mtime_ns) != (fp["size"], fp["mtime_ns"]):
        return False
    if fp.get("legacy") or st.st_ino == fp["ino"]:
        return True
    return fp.get("sha256") is not None and sha256_file(path) == fp["sha256"]


def _reason_file(dst: Path) -> Path:
    return dst.with_name(dst.name + ".reason.txt")


def _safe_folder(label: str) -> str:
    """A class name as one folder name: no separators, not hidden, not one of ours."""
    name = label.replace(os.sep, "_").replace("/", "_").strip() or "_"
    if name.startswith(".") or name in (UNSURE, UNREADABLE):
        name = "_" + name
    return name
