"""Training input path at 224 px from the warm decode cache: can it feed a GPU?

    PYTHONPATH=. python benchmarks/bench_input.py [--count 1024] [--batch-size 64] [--epochs 5] [--json]

One generated folder of JPEGs is decoded once into the memmap cache, then the
trainer's batches (`resnet_tl.training.batches.keras_batches`: memmap rows -> batch,
one-hot labels) are read in order, as `fit` reads them, for `--epochs`
epochs after one warm-up epoch; images/s is the median epoch. Rows:
  uint8, prefetched       what training uses now: uint8 pixels, next batches built on
                          len(os.sched_getaffinity(0)) loader threads while the caller works
  uint8, no prefetch      the same batches built on the caller's thread
  float32, no prefetch    the earlier path (float32 conversion on the host, one thread)
  + augmentation          uint8 prefetched batches through `fit` of a model that is only the
                          recipe augmentation (flip, random resized crop) and a 10-unit
                          head: the input path plus on-device augmentation on this CPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import make_folder  # noqa: E402

from resnet_tl.data import load_dataset  # noqa: E402
from resnet_tl.data.prefetch import loader_workers  # noqa: E402
from resnet_tl.recipe import DataConfig  # noqa: E402


def epoch_rates(make, epochs: int) -> tuple[float, float]:
    """Median (images/s, images per CPU-second of this process) over `epochs`
    epochs of make(epoch) batches, after one warm-up epoch."""
    from resnet_tl.training.bench import cpu_seconds

    rates, cpu_rates = [], []
    for e in range(epochs + 1):
        batches = make(e)
        t, c, n = time.perf_counter(), cpu_seconds(), 0
        for i in range(len(batches)):
            n += len(batches[i][0])
        if e:
            rates.append(n / (time.perf_counter() - t))
            cpu_rates.append(n / max(cpu_seconds() - c, 1e-9))
    return statistics.median(rates), statistics.median(cpu_rates)


def host_rows(x, y, n_classes: int, batch_size: int, epochs: int) -> dict[str, tuple[float, float]]:
    from resnet_tl.data import prefetch
    from resnet_tl.data.batches import ArrayBatches
    from resnet_tl.training.batches import keras_batches

    def trainer(e):
        b = keras_batches(x, y, n_classes, batch_size, 0, True)
        b.set_epoch(e)
        return b

    def plain(dtype):
        def make(e):
            b = ArrayBatches(x, y, batch_size, seed=0, dtype=dtype)
            b.set_epoch(e)
            return b
        return make

    rows = {}
    rows["uint8, prefetched"] = epoch_rates(trainer, epochs)
    rows["uint8, no prefetch"] = epoch_rates(plain("uint8"), epochs)
    rows["float32, no prefetch"] = epoch_rates(plain("float32"), epochs)
    assert prefetch._POOL is not None and prefetch._POOL._max_workers == loader_workers()
    return rows


def augmented_rate(x, y, n_classes: int, batch_size: int, epochs: int) -> tuple[float, float]:
    """(images/s, images per CPU-second) of fit over uint8 prefetched batches through
    flip + random resized crop and a tiny head."""
    import keras

    from resnet_tl.training.augment import build_augmenter
    from resnet_tl.training.bench import step_times
    from resnet_tl.recipe import AugmentConfig
    from resnet_tl.training.batches import keras_batches

    size = x.shape[1]
    aug = build_augmenter(AugmentConfig(flip="horizontal", crop=0.5), size, 0)
    inputs = keras.Input((size, size, 3))
    out = keras.layers.Dense(n_classes, activation="softmax")(keras.layers.GlobalAveragePooling2D()(aug(inputs)))
    model = keras.Model(inputs, out)
    model.compile("adam", "categorical_crossentropy", jit_compile=keras.backend.backend() == "jax")
    batches = keras_batches(x, y, n_classes, batch_size, 0, True)
    step_times(keras, model, batches, 2)  # compile
    wall, cpu = [], []
    for _ in range(epochs):
        wall += step_times(keras, model, batches, 1, cpu=cpu)
    return batch_size / statistics.median(wall), batch_size / statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1024)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "images", Path(tmp) / "cache"
        make_folder(root, args.count, 256)
        cfg = DataConfig(dir=str(root), image_size=args.image_size, cache_dir=str(cache), val_split=0.01, few_images_warning=0)
        load_dataset(cfg)
        ds = load_dataset(cfg)  # the warm cache: nothing decoded
        assert ds.stats["decoded"] == 0, ds.stats
        x, y, k = ds.x_train, ds.y_train, len(ds.classes)
        rows = host_rows(x, y, k, args.batch_size, args.epochs)
        rows["uint8, prefetched + augmentation in fit"] = augmented_rate(x, y, k, args.batch_size, args.epochs)
    import keras

    doc = {"images": int(len(y)), "image_size": args.image_size, "batch_size": args.batch_size,
           "loader_workers": loader_workers(), "backend": keras.backend.backend(),
           "images_per_s": {name: round(v[0], 1) for name, v in rows.items()},
           "images_per_cpu_s": {name: round(v[1], 1) for name, v in rows.items()}}
    if args.json:
        print(json.dumps(doc))
        return
    print(f"{doc['images']} images at {args.image_size} px, batch {args.batch_size}, "
          f"{doc['loader_workers']} loader threads, {doc['backend']}\n\n| path | images/s (wall) | images per CPU-second |\n| --- | --- | --- |")
    for name, (v, c) in rows.items():
        print(f"| {name} | {v:,.0f} | {c:,.0f} |")


if __name__ == "__main__":
    main()
