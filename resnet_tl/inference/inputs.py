"""Which image files a list of PATHs (files, folders, globs) names: lazily, in order, without repeats."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterator

from resnet_tl.data.decode import IMAGE_EXTENSIONS

_GLOB_CHARS = set("*?[")


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
