"""`data.exclude` / `train --exclude FILE`: image paths to leave out of a dataset.

The file is either one path per line (blank lines and lines starting with # ignored) or a CSV
whose header has a ``path`` column, such as a filtered ``audit.csv``. Relative paths are taken
from the dataset root. Excluded images leave their split (the others keep theirs, so a run with
and one without exclusions are compared on the same validation images, less the excluded).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from resnet_tl.data.scan import Scan
from resnet_tl.errors import UserError


def read_exclude(path: str | Path, root: str | Path) -> list[str]:
    """Absolute, normalised paths (symlinks kept as named) listed in the file `path`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"data.exclude: file '{path}' not found; allowed: a text file of image paths or a CSV with a 'path' column") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"data.exclude: cannot read '{path}' ({e}); allowed: a UTF-8 text or CSV file") from None
    lines = text.splitlines()
    header = next(csv.reader([lines[0]]), []) if lines else []
    if "path" in header:
        entries = [row.get("path") or "" for row in csv.DictReader(io.StringIO(text))]
    else:
        entries = [ln.strip() for ln in lines if not ln.lstrip().startswith("#")]
    base = Path(root)
    return [os.path.normpath(os.path.abspath(base / e)) for e in entries if e.strip()]


def apply_exclude(scan: Scan, paths: list[str]) -> None:
    """Remove the listed images from `scan.items`, record their relpaths in `scan.excluded`, warn about unknown paths."""
    wanted = set(paths)
    found = set()
    for split, items in scan.items.items():
        kept = []
        for it in items:
            key = os.path.normpath(os.path.abspath(it.path))
            if key in wanted:
                found.add(key)
                scan.excluded.append(it.relpath)
            else:
                kept.append(it)
        scan.items[split] = kept
    missing = sorted(wanted - found)
    if missing:
        scan.warnings.append(f"data.exclude: {len(missing)} listed path(s) are not images of this dataset (first: {missing[0]})")
