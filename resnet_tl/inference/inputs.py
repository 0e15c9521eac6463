"""Which image files a list of PATHs (files, folders, globs) names: lazily, in order, without repeats.

Folders are told apart by (device, inode), never by how their path is
spelled, so a folder reached twice (a symbolic link to it, a loop such as
``loop -> .``, a glob and a folder naming the same tree) is searched once, and
an excluded folder (a sort destination inside the folder being sorted) is
left out however it is reached: by a folder, a glob, a symbolic link or a
file named inside it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from pathlib import Path
from typing import Iterator

from resnet_tl.data.decode import IMAGE_EXTENSIONS, DecodeError

_GLOB_CHARS = set("*?[")


def canonical(path: str | Path, cache: dict[str, str] | None = None) -> str:
    """The absolute path with its folder resolved (symbolic links, ``..``) and its name kept as is.

    The key a file has however it was typed (relative or absolute, through a
    linked folder); the name itself is not resolved, so a symbolic link to an
    image stays itself. `cache`: resolved folders, for callers that key many files.
    """
    folder, name = os.path.split(os.path.abspath(path))
    if cache is None:
        return os.path.join(os.path.realpath(folder), name)
    real = cache.get(folder)
    if real is None:
        real = cache[folder] = os.path.realpath(folder)
    return os.path.join(real, name)


def iter_inputs(inputs: list[str], exclude: list[Path] = ()) -> Iterator[Path | dict]:
    """Image files in input order, lazily and without repeats, or a not_found row for an input that matched nothing.

    A file named explicitly is always tried (its decode error is its row);
    folders (scandir walk, sorted per folder, hidden entries skipped) and
    globs contribute files with an image extension. `exclude`: folders never
    searched and whose files are never yielded. Memory does not grow with the
    number of files under a folder: repeats are avoided by remembering the
    folders walked and the files named or globbed, not every file found.
    """
    return _Inputs(exclude).run(inputs)


class _Inputs:
    def __init__(self, exclude: list[Path]):
        self.excluded = {k for k in map(_key, exclude) if k is not None}
        self.walked: set[tuple[int, int]] = set()   # folders whose image files were all yielded
        self.named: set[tuple[int, int]] = set()    # files yielded by name or by a glob
        self.globbed: set[tuple[int, int]] = set()  # folders a glob has searched (once per glob)
        self._inside: dict[str, bool] = {}          # resolved folder -> inside an excluded folder

    def run(self, inputs: list[str]) -> Iterator[Path | dict]:
        for item in inputs:
            p = Path(item)
            if p.is_dir():
                yield from self.walk(p)
            elif p.exists():
                yield from self.file(p)
            elif _GLOB_CHARS & set(item):
                matched = False
                for m in self.glob(item):
                    matched = True
                    yield from (self.walk(m) if m.is_dir() else self.file(m) if _is_image(m.name) else ())
                if not matched:
                    yield {"path": item, "top": [], "error": "not_found", "detail": "the glob matched nothing"}
            else:
                yield {"path": item, "top": [], "error": "not_found", "detail": "no such file or folder"}

    def file(self, p: Path) -> Iterator[Path]:
        key = _key(p)
        if key is None or key in self.named or self.excluded_dir(p.parent):
            return
        if _walkable(p.name) and _key(p.parent) in self.walked:
            return  # already yielded by the walk of its folder
        self.named.add(key)
        yield p

    def excluded_dir(self, folder: Path) -> bool:
        """Whether `folder` is, or lies inside, an excluded folder (links resolved; bind mounts by inode)."""
        return bool(self.excluded) and self._inside_real(os.path.realpath(folder))

    def _inside_real(self, real: str) -> bool:
        verdict = self._inside.get(real)
        if verdict is None:
            parent = os.path.dirname(real)
            verdict = _key(real) in self.excluded or (parent != real and self._inside_real(parent))
            self._inside[real] = verdict
        return verdict

    def walk(self, folder: Path) -> Iterator[Path]:
        """Every image file under `folder`, depth first, each folder's entries sorted by name."""
        key = _key(folder)
        if key is None or key in self.walked or self.excluded_dir(folder):
            return
        self.walked.add(key)
        entries = _listing(folder)
        for name, is_dir in entries:
            if name.startswith("."):
                continue
            if is_dir:
                yield from self.walk(folder / name)
            elif _is_image(name) and (not self.named or _key(folder / name) not in self.named):
                yield folder / name

    def glob(self, pattern: str) -> Iterator[Path]:
        """Files and folders matching `pattern` (``*``, ``?``, ``[...]``, ``**`` for any depth), in walk order.

        Our own walk rather than `glob.iglob`, which follows a symbolic link
        loop until the path is too long and yields the same file each time.
        """
        parts = Path(pattern).parts
        i = next(j for j, part in enumerate(parts) if _GLOB_CHARS & set(part))
        base = Path(*parts[:i]) if i else Path(".")
        seen: set[tuple[int, int]] = set()

        def search(folder: Path, states: frozenset[int], shown: Path) -> Iterator[Path]:
            key = _key(folder)
            if key is None or key in seen or self.excluded_dir(folder):
                return
            seen.add(key)
            for name, is_dir in _listing(folder):
                nxt = _advance(parts[i:], states, name)
                if not nxt:
                    continue
                path = shown / name
                if len(parts) - i in nxt:
                    yield path
                    if is_dir:
                        continue  # walked whole by the caller
                if is_dir:
                    yield from search(folder / name, nxt, path)

        if base.is_dir():
            yield from search(base, _closure(parts[i:], frozenset({0})), Path(*parts[:i]) if i else Path())


def read_source(path: str | Path, fingerprint: bool = False) -> tuple[bytes, dict | None]:
    """(the file's bytes, its fingerprint or None); raises DecodeError("unreadable") when it cannot be read.

    Fingerprint: {"dev", "ino", "size" (bytes read), "mtime_ns", "ctime_ns",
    "sha256" (of the bytes read), "unstable" (it changed while being read)}.
    Only regular files are read: opening a FIFO would wait for a writer forever.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise DecodeError("unreadable", e.strerror or str(e)) from None
    with os.fdopen(fd, "rb") as f:
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise DecodeError("unreadable", f"not a regular file ({file_kind(before.st_mode)})")
            data = f.read()
            after = os.fstat(fd) if fingerprint else before
        except OSError as e:
            raise DecodeError("unreadable", e.strerror or str(e)) from None
    if not fingerprint:
        return data, None
    unstable = (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(data) != after.st_size
    return data, {"dev": after.st_dev, "ino": after.st_ino, "size": len(data), "mtime_ns": after.st_mtime_ns,
                  "ctime_ns": after.st_ctime_ns, "sha256": hashlib.sha256(data).hexdigest(), "unstable": unstable}


def file_kind(mode: int) -> str:
    """"socket", "fifo", "folder", ... for a stat mode that is not a regular file."""
    kinds = ((stat.S_ISSOCK, "socket"), (stat.S_ISFIFO, "fifo"), (stat.S_ISDIR, "folder"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"), (stat.S_ISLNK, "symbolic link"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _advance(pats: tuple[str, ...], states: frozenset[int], name: str) -> frozenset[int]:
    """The pattern positions reachable after matching one more path component `name`."""
    out = set()
    for s in states:
        if s == len(pats):
            continue
        pat = pats[s]
        if name.startswith(".") and not pat.startswith("."):
            continue  # as in a shell: wildcards (and **) do not match hidden names
        if pat == "**":
            out.add(s)  # ** swallows this name and may swallow more
        elif fnmatch.fnmatchcase(name, pat):
            out.add(s + 1)
    return _closure(pats, frozenset(out))


def _closure(pats: tuple[str, ...], states: frozenset[int]) -> frozenset[int]:
    """`states` plus the positions after any ``**`` that may match nothing."""
    out = set(states)
    for s in sorted(states):
        while s < len(pats) and pats[s] == "**":
            s += 1
            out.add(s)
    return frozenset(out)


def _key(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) of what `path` names, links followed; None when it cannot be reached."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _is_image(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _walkable(name: str) -> bool:
    return not name.startswith(".") and _is_image(name)


def _listing(folder: Path) -> list[tuple[str, bool]]:
    """(name, is a folder) of `folder`'s entries, sorted by name; one folder's listing in memory per level."""
    try:
        with os.scandir(folder) as it:
            return sorted((e.name, _is_dir(e)) for e in it)
    except OSError:
        return []


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False
