"""Image folders -> arrays: scan, decode once into a cache, batch without TensorFlow.

Nothing here imports TensorFlow or Keras at module level: the input path runs
with numpy and Pillow only, under any Keras backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnet_tl.data.arrays import arrays_for, materialize
from resnet_tl.data.cache import DecodeCache
from resnet_tl.data.decode import DecodeError, decode_bytes, decode_image
from resnet_tl.data.exclude import apply_exclude, read_exclude
from resnet_tl.data.scan import Item, Scan, Skipped, scan_folder
from resnet_tl.recipe import DataConfig

__all__ = [
    "Dataset", "DecodeError", "Item", "Scan", "Skipped",
    "arrays_for", "decode_bytes", "decode_image", "load_dataset", "scan_folder",
]


@dataclass
class Dataset:
    """A scanned folder as arrays. x_*: uint8 (N, S, S, 3) memmaps; y_*: int32 (N,) class indices."""

    scan: Scan
    classes: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    paths_train: list[Path]
    paths_val: list[Path]
    paths_test: list[Path] | None
    stats: dict[str, int]  # hashed / decoded / reused / copied during this load


def load_dataset(cfg: DataConfig, root_override: str | Path | None = None, progress=None) -> Dataset:
    """Scan cfg.dir (or root_override), leave out cfg.exclude's images, decode what the cache lacks, return every split.

    progress(stage, done, total) reports slow first reads. Raises UserError for a missing folder, an empty class (unless
    data.skip_empty_classes) and any blocking problem of the scan.
    """
    root = Path(root_override) if root_override is not None else Path(cfg.dir)
    cache = DecodeCache(root, cfg.cache_dir)
    scan = scan_folder(root, cfg, progress=progress, cache=cache)
    scan.raise_for_problems()
    if cfg.exclude:
        apply_exclude(scan, read_exclude(cfg.exclude, root))
    arrays = materialize(scan, cfg.image_size, cfg, cache)
    test = "test" in scan.items
    return Dataset(
        scan=scan,
        classes=list(scan.classes),
        x_train=arrays.x["train"], y_train=arrays.y["train"],
        x_val=arrays.x["val"], y_val=arrays.y["val"],
        x_test=arrays.x["test"] if test else None, y_test=arrays.y["test"] if test else None,
        paths_train=[it.path for it in scan.items["train"]],
        paths_val=[it.path for it in scan.items["val"]],
        paths_test=[it.path for it in scan.items["test"]] if test else None,
        stats=cache.counters.as_dict(),
    )
