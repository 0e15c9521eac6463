"""A scan's splits as arrays: decode what the cache lacks, lay the rows out contiguously, map them.

    arrays = materialize(scan, image_size, cfg)   # arrays.x["train"]: uint8 (N, S, S, 3) memmap

Train, val and test rows are written in that order, so each split is a plain slice of one
memory-mapped file; a second load of an unchanged folder decodes and copies nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from resnet_tl.data.cache import Counters, DecodeCache, decode_checked, parallel_map
from resnet_tl.data.scan import Scan
from resnet_tl.errors import UserError

SPLITS = ("train", "val", "test")


@dataclass
class Arrays:
    """Every split of a scan as uint8 (N, size, size, 3) memmap slices and int32 (N,) labels."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    counters: Counters = field(default_factory=Counters)


def materialize(scan: Scan, image_size: int, cfg, cache: DecodeCache | None = None) -> Arrays:
    """Decode what the cache lacks, lay the splits out contiguously, return memmap views."""
    cache = cache or DecodeCache(scan.root, cfg.cache_dir)
    order = [(it.relpath, it.sha1) for split in SPLITS for it in scan.items.get(split, [])]
    with cache.lock():
        resize = getattr(cfg, "resize", "antialias")  # data.resize
        store = cache.store(image_size, resize)
        store.remove_orphans()
        missing = [it for split in SPLITS for it in scan.items.get(split, []) if store.lookup(it.relpath, it.sha1) is None]
        missing_rel = {it.relpath for it in missing}
        cache.counters.reused += sum(rel not in missing_rel and sha not in cache.fresh for rel, sha in order)
        for path, rel, sha, pixels in parallel_map(lambda it: _decode_item(it, image_size, resize), _unique_by_sha1(missing)):
            cache.counters.decoded += 1
            cache.fresh.add(sha)
            store.append(rel, sha, pixels)
        store.commit()
        if not store.is_arranged(order):
            cache.counters.copied += store.arrange(order)
    mm = store.memmap()
    x, y, start = {}, {}, 0
    for split in SPLITS:
        items = scan.items.get(split)
        if items is None:
            continue
        x[split] = mm[start:start + len(items)]
        y[split] = np.array([it.label for it in items], dtype=np.int32)
        start += len(items)
    return Arrays(x, y, cache.counters)


def _unique_by_sha1(items: list) -> list:
    seen, out = set(), []
    for it in items:
        if it.sha1 not in seen:
            seen.add(it.sha1)
            out.append(it)
    return out


def _decode_item(item, image_size: int, resize: str = "antialias"):
    pixels, err = decode_checked(item.path, item.sha1, image_size, resize)
    if err is not None:
        raise UserError(f"image '{item.path}' decoded at scan time but not at {image_size}px ({err}); remove it")
    return item.path, item.relpath, item.sha1, pixels


def arrays_for(scan: Scan, split: str, image_size: int, cfg, cache: DecodeCache | None = None) -> tuple[np.ndarray, np.ndarray]:
    """x uint8 (N, image_size, image_size, 3) memmap, y int32 (N,) of one split ('train', 'val', 'test')."""
    if split not in scan.items:
        raise UserError(f"split '{split}' not in the scan of '{scan.root}'; allowed: {', '.join(scan.items)}")
    arrays = materialize(scan, image_size, cfg, cache)
    return arrays.x[split], arrays.y[split]

