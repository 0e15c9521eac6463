"""Input-path throughput: our decode-once cache vs keras.utils.image_dataset_from_directory.

    PYTHONPATH=. python benchmarks/bench_data.py [--count 2000] [--src-size 256] [--image-size 224] [--json]

On one generated folder of JPEGs (4 classes), measures images/s for
  cold   scan + decode + cache write into an empty cache (our first run),
  warm   ArrayBatches over the memmap, float32 batches: epoch 1, and the median of epochs 2-5,
  keras  image_dataset_from_directory, the faster of epochs 2 and 3 (it decodes every epoch),
  keras cached  the strongest fair peer: image_dataset_from_directory(...).cache().prefetch(AUTOTUNE),
         epoch 1 fills the in-memory cache, the faster of epochs 2 and 3 is reported,
plus the warm start (a second load_dataset on the unchanged folder) and the cost of
adding one image to the cached folder (what load_dataset decodes and copies then).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_tl.data import load_dataset  # noqa: E402
from resnet_tl.data.batches import ArrayBatches  # noqa: E402
from resnet_tl.recipe import DataConfig  # noqa: E402


def _cpu() -> float:
    """CPU seconds of this process, all threads: robust when other jobs share the machine."""
    t = os.times()
    return t.user + t.system


def make_folder(root: Path, count: int, size: int, classes: int = 4) -> None:
    """`count` JPEGs of size x size: smooth noise plus a shape, quality 90."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)
        img.save(folder / f"{i:05d}.jpg", "JPEG", quality=90)


def bench_ours(root: Path, cache: Path, image_size: int, batch_size: int) -> dict:
    cfg = DataConfig(dir=str(root), image_size=image_size, cache_dir=str(cache), val_split=0.2, few_images_warning=0)
    t, c = time.perf_counter(), _cpu()
    ds = load_dataset(cfg)
    cold, cold_cpu = time.perf_counter() - t, _cpu() - c
    n = len(ds.y_train) + len(ds.y_val)

    t = time.perf_counter()
    ds = load_dataset(cfg)
    warm_start = time.perf_counter() - t
    assert ds.stats["decoded"] == 0, ds.stats

    # One more image in the folder: decoded once, but the split layout changes, so
    # the cache's rows are rewritten in the new order (see README, "Decoded once").
    with Image.open(sorted(root.glob("class0/*.jpg"))[0]) as img:
        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "class0" / "added.jpg", "JPEG", quality=90)
    t = time.perf_counter()
    added = load_dataset(cfg)
    append_s = time.perf_counter() - t
    append_stats = dict(added.stats)
    (root / "class0" / "added.jpg").unlink()
    ds = load_dataset(cfg)  # back to the measured folder

    splits = [ArrayBatches(ds.x_train, ds.y_train, batch_size, seed=0), ArrayBatches(ds.x_val, ds.y_val, batch_size, seed=0)]
    epochs, cpus = [], []
    for _ in range(5):  # epoch 1 maps the file's pages in; later epochs are the steady state
        seen = 0
        t, c = time.perf_counter(), _cpu()
        for batches in splits:
            for x, y in batches:
                assert x.dtype == np.float32 and x.shape[1:] == (image_size, image_size, 3)
                seen += len(y)
        epochs.append(time.perf_counter() - t)
        cpus.append(_cpu() - c)
        assert seen == n
    return {"images": n, "cold_s": cold, "warm_start_s": warm_start, "append_s": append_s, "append_stats": append_stats,
            "row_bytes": image_size * image_size * 3, "warm_epoch1_s": epochs[0],
            "warm_epoch2_s": statistics.median(epochs[1:]), "cold_cpu_s": cold_cpu,
            "warm_epoch2_cpu_s": statistics.median(cpus[1:])}


def bench_keras(root: Path, image_size: int, batch_size: int, cached: bool = False) -> dict:
    """cached: .cache().prefetch(AUTOTUNE), the tf.data guide's advice; the first epoch fills the cache."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    ds = keras.utils.image_dataset_from_directory(
        root, image_size=(image_size, image_size), batch_size=batch_size, shuffle=True, seed=0, verbose=False,
    )
    if cached:
        import tensorflow as tf

        ds = ds.cache().prefetch(tf.data.AUTOTUNE)
    n = 0
    for x, y in ds:  # first epoch: file listing, graph tracing, warm-up
        n += int(y.shape[0])
    times, cpus = [], []
    for _ in range(2):  # epochs 2 and 3: the steady state (it decodes every epoch)
        seen = 0
        t, c = time.perf_counter(), _cpu()
        for x, y in ds:
            seen += int(y.shape[0])
        times.append(time.perf_counter() - t)
        cpus.append(_cpu() - c)
    return {"images": seen, "second_epoch_s": min(times), "second_epoch_cpu_s": min(cpus), "backend": keras.backend.backend()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2000, help="JPEGs to generate")
    ap.add_argument("--src-size", type=int, default=256, help="side of the generated JPEGs (px)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--no-keras", action="store_true", help="skip the TensorFlow baseline")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        root, cache = Path(tmp) / "images", Path(tmp) / "cache"
        t = time.perf_counter()
        make_folder(root, args.count, args.src_size)
        gen_s = time.perf_counter() - t
        ours = bench_ours(root, cache, args.image_size, args.batch_size)
        base = None if args.no_keras else bench_keras(root, args.image_size, args.batch_size)
        cached = None if args.no_keras else bench_keras(root, args.image_size, args.batch_size, cached=True)

    n = ours["images"]
    rows = {
        "cold (scan + decode + cache)": n / ours["cold_s"],
        "warm start (rescan, 0 decodes)": n / ours["warm_start_s"],
        "warm epoch 1 (ArrayBatches, float32)": n / ours["warm_epoch1_s"],
        "warm epoch 2-5 median (ArrayBatches, float32)": n / ours["warm_epoch2_s"],
    }
    if base:
        rows["keras image_dataset_from_directory, epoch 2|3 best"] = base["images"] / base["second_epoch_s"]
        rows["keras ... .cache().prefetch(), epoch 2|3 best"] = cached["images"] / cached["second_epoch_s"]
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
        "images": n, "src_size": args.src_size, "image_size": args.image_size, "batch_size": args.batch_size,
        "generate_s": round(gen_s, 2),
        "append_one_image": {"seconds": round(ours["append_s"], 2), **ours["append_stats"],
                             "rewritten_mb": round(ours["append_stats"]["copied"] * ours["row_bytes"] / 1e6, 1),
                             "warm_start_seconds": round(ours["warm_start_s"], 2)},
        "images_per_s": {k: round(v, 1) for k, v in rows.items()},
        "seconds": {"cold": ours["cold_s"], "warm_start": ours["warm_start_s"],
                    "warm_epoch1": ours["warm_epoch1_s"], "warm_epoch2": ours["warm_epoch2_s"],
                    **({"keras_epoch2": base["second_epoch_s"], "keras_cached_epoch2": cached["second_epoch_s"]} if base else {})},
    }
    if base:
        k = rows["keras image_dataset_from_directory, epoch 2|3 best"]
        kc = rows["keras ... .cache().prefetch(), epoch 2|3 best"]
        result["ratios"] = {
            "warm_epoch2-5 / keras_cached_epoch2": round(rows["warm epoch 2-5 median (ArrayBatches, float32)"] / kc, 2),
            "warm_epoch1 / keras_cached_epoch2": round(rows["warm epoch 1 (ArrayBatches, float32)"] / kc, 2),
            "warm_epoch1 / keras_epoch2": round(rows["warm epoch 1 (ArrayBatches, float32)"] / k, 1),
            "warm_epoch2-5 / keras_epoch2": round(rows["warm epoch 2-5 median (ArrayBatches, float32)"] / k, 1),
            "cold / keras_epoch2": round(rows["cold (scan + decode + cache)"] / k, 2),
        }
    result["cpu_ms_per_image"] = {
        "cold": round(1e3 * ours["cold_cpu_s"] / n, 3),
        "warm_epoch": round(1e3 * ours["warm_epoch2_cpu_s"] / n, 3),
        **({"keras_epoch": round(1e3 * base["second_epoch_cpu_s"] / base["images"], 3),
            "keras_cached_epoch": round(1e3 * cached["second_epoch_cpu_s"] / cached["images"], 3)} if base else {}),
    }
    result["load_average_1min"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{n} JPEGs {args.src_size}x{args.src_size} -> {args.image_size} px, batch {args.batch_size}; {result['machine']}")
    width = max(map(len, rows))
    for name, ips in rows.items():
        print(f"  {name:<{width}}  {ips:10.1f} images/s")
    for name, r in result.get("ratios", {}).items():
        print(f"  {name}: {r}x")
    print("  CPU ms per image (all threads): " + ", ".join(f"{k} {v}" for k, v in result["cpu_ms_per_image"].items()))
    a = result["append_one_image"]
    print(f"  one image added: {a['seconds']} s (warm start {a['warm_start_seconds']} s), decoded {a['decoded']}, "
          f"rows rewritten {a['copied']} ({a['rewritten_mb']} MB)")
    print(f"  load average at the end: {result['load_average_1min']}")


if __name__ == "__main__":
    main()
