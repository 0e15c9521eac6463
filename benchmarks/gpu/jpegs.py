"""Photo-sized JPEGs for the GPU benchmark, written by every CPU."""

from __future__ import annotations

import io
import multiprocessing
import os
import time
from pathlib import Path


def _jpeg(job: tuple[str, int, int, int]) -> int:
    """One photo-sized JPEG: a smooth random colour field (upsampled 8x6 grid) plus pixel noise; returns its size in bytes."""
    import numpy as np
    from PIL import Image

    path, seed, w, h = job
    rng = np.random.default_rng(seed)
    base = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC), np.int16)
    noise = rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    Path(path).write_bytes(buf.getvalue())
    return len(buf.getvalue())


def make_jpegs(root: Path, n: int, classes: int, wh: tuple[int, int], seed: int) -> dict:
    """n JPEGs of wh pixels in `classes` class folders under root, written by every CPU."""
    t = time.monotonic()
    jobs = []
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        jobs.append((str(root / f"class{i % classes}" / f"img{i:06d}.jpg"), seed + i, *wh))
    # spawn: in a --dry-run this process holds JAX's threads, which a fork would copy mid-flight.
    with multiprocessing.get_context("spawn").Pool(os.cpu_count()) as pool:
        sizes = pool.map(_jpeg, jobs, chunksize=64)
    return {"images": n, "classes": classes, "width": wh[0], "height": wh[1], "mean_kb": round(sum(sizes) / n / 1e3, 1),
            "seconds": round(time.monotonic() - t, 2)}
