"""The lock and the journal of a --sort-into DIR: one run at a time, and a record of every step.

The journal (``DIR/.resnet-tl-journal.jsonl``) is JSON Lines, ASCII only
(odd file names are ``\\udcXX`` escapes). Version 2, one line per step:

- ``{"op": "journal", "version": 2}``, the first line;
- ``begin``: id, src (absolute, folder resolved), dst and tmp (relative to
  DIR), mode, fp (the source as it was read for prediction: dev, ino, size,
  mtime_ns, ctime_ns, sha256), row; fsync'ed before anything is touched;
- ``dest``: id, dst; the destination taken by someone else, the next free
  name (fsync'ed before it is used);
- ``done``: id, src, fp, row (with ``dest``); ``failed``: id, src, fp (what
  the source was when it failed), reason, row.

A journal from resnet-tl before version 2 (no header; destinations relative
to the folder the run was started in) is converted on first use: its done
files stay done, a file it left half-sorted is finished from DIR/<row dest>;
the original is kept as ``.resnet-tl-journal.v1.jsonl``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from resnet_tl.errors import UserError
from resnet_tl.fileio import atomic_write_text
from resnet_tl.inference.inputs import canonical
from resnet_tl.inference.sort_place import file_state, read_fingerprint

try:
    import fcntl
except ImportError:  # Windows: msvcrt's byte-range lock instead
    fcntl = None
    import msvcrt

JOURNAL = ".resnet-tl-journal.jsonl"
LOCK = ".resnet-tl.lock"
VERSION = 2


class DirLock:
    """An exclusive lock on DIR (``DIR/.resnet-tl.lock``) for one whole run.

    Advisory (flock): every resnet-tl sorting into DIR takes it; the kernel
    drops it when the process ends, however it ends, so it is never stale. A
    second run does not wait: it stops with one line naming the holder.
    """

    def __init__(self, folder: Path):
        path = folder / LOCK
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                msvcrt.locking(self.fd, msvcrt.LK_NBLCK, 1)
        except OSError as e:
            held = isinstance(e, BlockingIOError) or fcntl is None
            holder = _read_holder(self.fd) if held else ""
            os.close(self.fd)
            if not held:
                raise UserError(f"--sort-into '{folder}': cannot lock {LOCK} in it ({e.strerror or e}); "
                                "allowed: a folder on a filesystem with file locks") from None
            raise UserError(f"--sort-into '{folder}': another resnet-tl is sorting into it ({holder}); "
                            "allowed: one run per folder at a time (wait for it to finish, or choose another DIR)") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv)}
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, (json.dumps(info) + "\n").encode("ascii"))

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor releases the lock; the file stays (removing it would race)
            self.fd = -1


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096) or b"{}")
        return f"pid {info['pid']} on {info['host']} since {info['since']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "holder unknown"


class Journal:
    """DIR's journal: read (and converted from version 1) when opened, appended to by one run.

    pending: {id: begin entry} not yet done or failed. done: {src: [fp, ...]},
    one fingerprint per file sorted from that path (None: recorded as
    not_found). failed: {src: the last failed entry}, cleared by a later done.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / JOURNAL
        self.pending: dict[int, dict] = {}
        self.done: dict[str, list[dict | None]] = {}
        self.failed: dict[str, dict] = {}
        self.next_id = 1
        lines = self._read_lines()
        if lines and lines[0].get("op") != "journal":
            lines = self._convert_v1(lines)
        elif lines and lines[0].get("version") != VERSION:
            raise UserError(f"--sort-into '{folder}': its journal {JOURNAL} is version {lines[0].get('version')}; "
                            f"allowed: version {VERSION} (written by this resnet-tl); use the resnet-tl that wrote it")
        for n, e in enumerate(lines[1:], start=2):
            try:
                self._apply(e)
            except (KeyError, TypeError) as ex:
                raise UserError(f"{self.path}: line {n} is not a journal entry (no {ex}); "
                                "allowed: the lines resnet-tl writes (move the file aside to start a new journal)") from None
        self._f = open(self.path, "a", encoding="ascii")
        if not lines:
            self.append({"op": "journal", "version": VERSION}, sync=True)

    def close(self) -> None:
        self._f.close()

    def append(self, entry: dict, sync: bool = False) -> None:
        """One line; sync: fsync'ed before returning (a begin must be on disk before its file is touched)."""
        self._f.write(json.dumps(entry, ensure_ascii=True) + "\n")
        self._f.flush()
        if sync:
            os.fsync(self._f.fileno())
        self._apply(entry)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def _apply(self, e: dict) -> None:
        op = e["op"]
        if op == "begin":
            self.pending[e["id"]] = e
        elif op == "dest":
            self.pending[e["id"]]["dst"] = e["dst"]
        elif op == "done":
            self.pending.pop(e["id"], None)
            self.done.setdefault(e["src"], []).append(e["fp"])
            self.failed.pop(e["src"], None)
        elif op == "failed":
            self.pending.pop(e["id"], None)
            self.failed[e["src"]] = e
        elif op != "journal":
            raise KeyError(f"op {op!r}")
        self.next_id = max(self.next_id, e.get("id", 0) + 1)

    def entries(self) -> Iterator[dict]:
        """Every entry, read again from the file (for predictions.csv)."""
        with open(self.path, encoding="ascii") as f:
            for line in f:
                yield json.loads(line)

    def _read_lines(self) -> list[dict]:
        """The complete lines; a line cut by a kill (its file was not touched yet: begin is written before acting) is cut off."""
        if not self.path.is_file():
            return []
        lines, good = [], 0
        with open(self.path, "rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                try:
                    lines.append(json.loads(raw))
                except ValueError:
                    break
                good += len(raw)
        if good != self.path.stat().st_size:
            os.truncate(self.path, good)
        return lines

    def _convert_v1(self, old: list[dict]) -> list[dict]:
        """Version 1 lines as version 2, written over the journal (the original kept beside it)."""
        out: list[dict] = [{"op": "journal", "version": VERSION}]
        pending: dict[str, dict] = {}
        for e in old:
            if e.get("op") == "begin":
                pending[e["src"]] = e
            elif e.get("op") == "done":
                pending.pop(e["src"], None)
                dest = e["row"].get("dest") or ""
                out.append({"op": "done", "id": len(out), "src": canonical(e["src"]), "row": e["row"],
                            "fp": _v1_placed(self.folder / dest) if dest else None})
        for e in pending.values():
            out.append(self._v1_unfinished(e, len(out)))
        shutil.copyfile(self.path, self.folder / ".resnet-tl-journal.v1.jsonl")
        atomic_write_text(self.path, "".join(json.dumps(x, ensure_ascii=True) + "\n" for x in out))
        return out

    def _v1_unfinished(self, e: dict, entry_id: int) -> dict:
        """A version 1 begin without done. Its dst was relative to the folder that run started in, so
        only DIR/<row dest> is trusted; with the source still there it is begun again (the copy at
        that name counts only if its bytes are the source's), else it is done if that file exists."""
        src, row = canonical(e["src"]), e["row"]
        if os.path.lexists(src):
            fp = read_fingerprint(src)
            folder = str(Path(row["dest"]).parent)
            return {"op": "begin", "id": entry_id, "src": src, "dst": row["dest"], "mode": e["mode"], "fp": fp,
                    "tmp": f"{folder}/.resnet-tl-{entry_id}.partial", "row": row}
        if os.path.lexists(self.folder / row["dest"]):
            return {"op": "done", "id": entry_id, "src": src, "fp": _v1_placed(self.folder / row["dest"]), "row": row}
        row = {**row, "dest": "", "top": [], "error": "not_found", "detail": "vanished before it was sorted"}
        return {"op": "done", "id": entry_id, "src": src, "fp": None, "row": row}


def _v1_placed(placed: Path) -> dict:
    """What a version 1 source looked like: its copy kept its size and modification time (copystat); a link is it."""
    st = file_state(placed)
    if st is None:
        return {"legacy": True}
    return {"legacy": True, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
