"""Decode once: decoded, resized images on disk, memory-mapped for reading.

Layout, one folder per dataset root (never inside the dataset)::

    <cache_dir>/datasets/<name>-<sha1 of root path>/
        lock            held by the process that writes (scan or materialize)
        files.json      what each file was last time: size, mtime_ns, sha1, facts or skip reason
        64px/index.json rows file name, committed row count, relpath -> [sha1, row]
        64px/rows-N.u8  raw uint8 rows of 64*64*3 bytes, append-only

A file is looked up by (relative path, size, mtime_ns); a changed file is
re-hashed, and only re-decoded when its content (sha1) is new. Rows past the
committed count are garbage from an interrupted run and are overwritten.
Every index is replaced atomically after the rows it names are on disk, so a
crash at any point leaves the previous, valid cache. `resnet_tl.data.arrays`
lays the rows of train, val and test out contiguously so each split is a plain memmap slice.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from resnet_tl.cachedir import default_cache_dir
from resnet_tl.cpus import usable_cpus
from resnet_tl.data.decode import DecodeError, decode_with_facts, probe_header, read_bytes
from resnet_tl.errors import UserError
from resnet_tl.fileio import atomic_write_json, read_json

CACHE_VERSION = 1


def dataset_cache_dir(root: Path, cache_dir: str | None) -> Path:
    """The cache folder of one dataset root; refuses a cache inside the dataset."""
    base = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    root = Path(root).resolve()
    base_resolved = base.resolve()
    if base_resolved == root or root in base_resolved.parents:
        raise UserError(
            f"data.cache_dir '{base}' is inside the image folder '{root}'; allowed: a folder outside it "
            "(the dataset is never written to)"
        )
    key = hashlib.sha1(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", root.name)[:40] or "root"
    return base / "datasets" / f"{name}-{key}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive advisory lock for writers; readers of committed rows need none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        if os.name == "posix":
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        else:  # pragma: no cover - Windows
            import msvcrt

            fh.seek(0)
            msvcrt.locking(fh.fileno(), msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)


# ------------------------------------------------------------------ facts
@dataclass
class Fact:
    """What one file was when last read; valid while size and mtime_ns match."""

    size: int
    mtime_ns: int
    sha1: str | None
    width: int = 0
    height: int = 0
    mode: str = ""
    format: str = ""
    reason: str | None = None  # a decode.REASONS entry (never too_small or our too_large: they depend on the config)
    detail: str = ""
    verified: bool = False  # fully decoded once; False: only the header was read

    def to_list(self) -> list:
        return [self.size, self.mtime_ns, self.sha1, self.width, self.height, self.mode, self.format,
                self.reason, self.detail, self.verified]

    @classmethod
    def from_list(cls, v: list) -> "Fact":
        return cls(*v)


@dataclass
class Counters:
    """What a load cost: files hashed and images decoded, rows reused or copied."""

    hashed: int = 0
    decoded: int = 0
    reused: int = 0
    copied: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"hashed": self.hashed, "decoded": self.decoded, "reused": self.reused, "copied": self.copied}


class DecodeCache:
    """The cache of one dataset root: file facts plus one RowStore per image size."""

    def __init__(self, root: str | Path, cache_dir: str | None = None):
        self.root = Path(root).resolve()
        self.folder = dataset_cache_dir(self.root, cache_dir)
        self.counters = Counters()
        self.fresh: set[str] = set()  # sha1 of rows decoded during this load (not "reused")

    @contextmanager
    def lock(self) -> Iterator[None]:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / "lock"
            probe.touch()
        except OSError as e:
            raise UserError(f"data.cache_dir '{self.folder.parent.parent}' cannot be written ({e.strerror}); allowed: a writable folder") from None
        with _locked(probe):
            yield

    def load_facts(self) -> dict[str, Fact]:
        raw = read_json(self.folder / "files.json")
        if not raw or raw.get("version") != CACHE_VERSION:
            return {}
        try:
            return {k: Fact.from_list(v) for k, v in raw["files"].items()}
        except (TypeError, KeyError, ValueError):
            return {}  # an unreadable index costs one re-scan, never a crash

    def save_facts(self, facts: dict[str, Fact]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.folder / "meta.json", {"root": str(self.root), "version": CACHE_VERSION})
        atomic_write_json(
            self.folder / "files.json",
            {"version": CACHE_VERSION, "files": {k: f.to_list() for k, f in sorted(facts.items())}},
        )

    def store(self, image_size: int, resize: str = "antialias") -> "RowStore":
        """The rows of one size and resize method (data.resize): 64px/, 64px-bilinear/."""
        suffix = "" if resize == "antialias" else f"-{resize}"
        return RowStore(self.folder / f"{image_size}px{suffix}", image_size)



# ------------------------------------------------------------------- rows
class RowStore:
    """Append-only uint8 rows (size, size, 3) of one image size; open it under the cache lock to write."""

    def __init__(self, folder: Path, image_size: int):
        self.folder = folder
        self.image_size = image_size
        self.row_shape = (image_size, image_size, 3)
        self.row_bytes = image_size * image_size * 3
        raw = read_json(folder / "index.json") or {}
        ok = raw.get("version") == CACHE_VERSION and raw.get("image_size") == image_size
        self.rows_file: str = raw.get("rows_file", "rows-1.u8") if ok else _next_rows_name(folder)
        self.n_rows: int = int(raw.get("n_rows", 0)) if ok else 0
        self.entries: dict[str, list] = dict(raw.get("entries", {})) if ok else {}
        if ok and not self._rows_file_ok():
            self.rows_file, self.n_rows, self.entries = _next_rows_name(folder), 0, {}
        self._by_sha1 = {sha: row for sha, row in self.entries.values()}
        self._fh = None
        self._dirty = False

    def _rows_file_ok(self) -> bool:
        try:
            return (self.folder / self.rows_file).stat().st_size >= self.n_rows * self.row_bytes
        except OSError:
            return False

    def lookup(self, relpath: str, sha1: str) -> int | None:
        """Row holding this file's pixels (same path or same content), or None."""
        e = self.entries.get(relpath)
        if e and e[0] == sha1:
            return e[1]
        return self._by_sha1.get(sha1)

    def append(self, relpath: str, sha1: str, pixels: np.ndarray) -> int:
        if self._fh is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.folder / self.rows_file, "a+b")
            # Bytes past the committed rows are from an interrupted run: drop them.
            self._fh.truncate(self.n_rows * self.row_bytes)
            self._fh.seek(self.n_rows * self.row_bytes)
        assert pixels.shape == self.row_shape and pixels.dtype == np.uint8
        self._fh.write(pixels.tobytes())
        row = self.n_rows
        self.n_rows += 1
        self.entries[relpath] = [sha1, row]
        self._by_sha1[sha1] = row
        self._dirty = True
        return row

    def commit(self) -> None:
        """Make appended rows durable, then name them in the index (atomic)."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
        if self._dirty:
            self._write_index()
            self._dirty = False

    def _write_index(self) -> None:
        atomic_write_json(
            self.folder / "index.json",
            {
                "version": CACHE_VERSION,
                "image_size": self.image_size,
                "rows_file": self.rows_file,
                "n_rows": self.n_rows,
                "entries": self.entries,
            },
        )

    def memmap(self) -> np.ndarray:
        """The committed rows, read-only: uint8 (n_rows, size, size, 3)."""
        if self.n_rows == 0:
            return np.zeros((0, *self.row_shape), np.uint8)
        return np.memmap(self.folder / self.rows_file, np.uint8, mode="r", shape=(self.n_rows, *self.row_shape))

    def is_arranged(self, order: list[tuple[str, str]]) -> bool:
        """True when `order` (relpath, sha1) occupies rows 0..len-1 in order, and garbage is at most half."""
        if self.n_rows > 2 * max(len(order), 1):
            return False
        for i, (rel, sha) in enumerate(order):
            e = self.entries.get(rel)
            if not e or e[0] != sha or e[1] != i:
                return False
        return True

    def arrange(self, order: list[tuple[str, str]], chunk: int = 256) -> int:
        """Rewrite rows in `order` into a new rows file (drops garbage); returns rows copied."""
        self.commit()
        old = self.memmap()
        rows = np.array([self.lookup(rel, sha) for rel, sha in order], dtype=np.int64)
        new_name = _next_rows_name(self.folder)
        new_path = self.folder / new_name
        with open(new_path, "wb") as fh:
            for start in range(0, len(rows), chunk):
                fh.write(np.ascontiguousarray(old[rows[start:start + chunk]]).tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        del old
        old_name = self.rows_file
        self.rows_file, self.n_rows = new_name, len(order)
        self.entries = {rel: [sha, i] for i, (rel, sha) in enumerate(order)}
        self._by_sha1 = {sha: i for i, (rel, sha) in reversed(list(enumerate(order)))}
        self._write_index()
        try:
            (self.folder / old_name).unlink()
        except OSError:
            pass  # still mapped by a reader on Windows; removed by a later run
        return len(order)

    def remove_orphans(self) -> None:
        """Delete rows files the index does not name (left by an interrupted arrange)."""
        for p in self.folder.glob("rows-*.u8"):
            if p.name != self.rows_file:
                try:
                    p.unlink()
                except OSError:
                    pass


def _next_rows_name(folder: Path) -> str:
    nums = [int(m.group(1)) for p in folder.glob("rows-*.u8") if (m := re.fullmatch(r"rows-(\d+)\.u8", p.name))]
    return f"rows-{max(nums, default=0) + 1}.u8"


# ------------------------------------------------------------- decoding
def sha1_bytes(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def read_fact(path: Path, size: int, mtime_ns: int, known: Callable[[str], Fact | None] = lambda sha: None) -> Fact:
    """Hash a file and read its header (no pixel decoding); a fact `known(sha1)` is reused as is."""
    try:
        data = read_bytes(path)
    except DecodeError as e:
        return Fact(size, mtime_ns, None, reason=e.reason, detail=e.detail, verified=True)
    sha = sha1_bytes(data)
    prior = known(sha)
    if prior is not None:
        return Fact(len(data), mtime_ns, sha, prior.width, prior.height, prior.mode, prior.format,
                    prior.reason, prior.detail, prior.verified)
    try:
        w, h, mode, fmt = probe_header(data)
    except DecodeError as e:
        return Fact(len(data), mtime_ns, sha, reason=e.reason, detail=e.detail, verified=True)
    return Fact(len(data), mtime_ns, sha, w, h, mode, fmt)


def decode_checked(path: Path, sha1: str, image_size: int, resize: str = "antialias") -> tuple[np.ndarray | None, DecodeError | None]:
    """Pixels uint8 (image_size, image_size, 3) of a file whose content must still hash to `sha1`.

    No pixel cap here: the scan compared the header with data.max_pixels
    before planning the file, and the content is the same (same sha1).
    """
    try:
        data = read_bytes(path)
        if sha1_bytes(data) != sha1:
            raise UserError(f"image '{path}' changed while loading; run again")
        return decode_with_facts(data, image_size, max_pixels=None, resize=resize).pixels, None
    except DecodeError as e:
        return None, e
    except UserError:
        raise
    except Exception as e:  # a Pillow bug on one odd file must not stop a scan of thousands
        return None, DecodeError("unsupported_format", f"{type(e).__name__}: {e}")


def parallel_map(fn: Callable, jobs: Iterable, workers: int | None = None) -> Iterator:
    """fn over jobs in a thread pool (Pillow and hashlib release the GIL), bounded memory, any order."""
    workers = workers or min(8, usable_cpus())
    if workers <= 1:
        yield from map(fn, jobs)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.submit(fn, job))
            if len(pending) >= 4 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
