"""resnet-tl's cache folder: one answer for every cache it keeps (decoded images, compiled programs)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/resnet-tl, ~/.cache/resnet-tl, or %LOCALAPPDATA%/resnet-tl on Windows."""
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "resnet-tl"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "resnet-tl"
