"""Grad-CAM: does the heatmap point at the evidence, and what does it cost next to a prediction?

Dataset (generated, seeded): 32 px images of a grey random texture (smoothed noise at two scales)
with one small square patch (8 px) at a random place; the patch's colour is the only class
evidence (red, blue, green, yellow; balanced), plus a class "none" of texture alone. Without it a
network learns one colour as "no patch of the other colours", whose evidence is everywhere and
whose map points nowhere (measured: 2 colours, 64% for one of them; 4 colours, blue 4%, the others
100%); with "none" every colour has to be detected where it is. The localisation rate counts the
images with a patch. A CIFAR ResNet-20 is trained from scratch on it through
`resnet_tl.training.train` (the library path `resnet-tl train` takes); then, on the validation
images, the localisation rate is the share whose Grad-CAM peak (argmax of the S x S map, for the
predicted class) falls inside the patch. Goal (issue 25): >= 90%.

Cost: seconds per image of `GradCam(model)(x)` vs `predict_probs(model, x)`, same batch size,
after one warm-up call each. Goal: < 2x.

    python benchmarks/bench_gradcam.py [--colours 4] [--no-none] [--train 150] [--val 50] [--epochs 10] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_tl.inference.gradcam import GradCam  # noqa: E402
from resnet_tl.models.batched import predict_probs  # noqa: E402
from resnet_tl.recipe import build_recipe  # noqa: E402
from resnet_tl.sysinfo import cpu_model  # noqa: E402
from resnet_tl.training.train import train  # noqa: E402

SIZE, PATCH = 32, 8
COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220), "green": (40, 200, 60), "yellow": (230, 210, 40), "none": None}


def patch_images(n: int, rng: np.random.Generator, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images uint8 (n, 32, 32, 3), labels (n,), patch boxes (n, 2) top-left y, x)."""
    names = list(COLOURS)[:classes]
    xs, ys, boxes = [], [], []
    for i in range(n):
        coarse = np.kron(rng.uniform(0, 1, (SIZE // 8, SIZE // 8)), np.ones((8, 8)))
        grey = 60 + 90 * coarse + rng.uniform(-40, 40, (SIZE, SIZE))
        img = np.repeat(np.clip(grey, 0, 255)[..., None], 3, axis=2).astype(np.uint8)
        label = i % classes
        y, x = rng.integers(0, SIZE - PATCH + 1, 2)
        if COLOURS[names[label]] is not None:
            img[y:y + PATCH, x:x + PATCH] = COLOURS[names[label]]
        xs.append(img)
        ys.append(label)
        boxes.append((y, x))
    return np.stack(xs), np.array(ys), np.array(boxes)


def write_folder(root: Path, x: np.ndarray, y: np.ndarray) -> None:
    names = list(COLOURS)
    for i, (img, label) in enumerate(zip(x, y)):
        path = root / names[label] / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)


def localisation_rate(maps: np.ndarray, boxes: np.ndarray) -> float:
    """Share of maps whose argmax lies inside the image's patch."""
    peaks = np.array(np.unravel_index(maps.reshape(len(maps), -1).argmax(axis=1), maps.shape[1:])).T
    inside = np.all((peaks >= boxes) & (peaks < boxes + PATCH), axis=1)
    return float(inside.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=150, help="training images per class")
    ap.add_argument("--val", type=int, default=50, help="validation images per class")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--colours", type=int, default=4, choices=(2, 3, 4), help="patch colours")
    ap.add_argument("--no-none", action="store_true", help="leave out the class 'none' (texture alone)")
    ap.add_argument("--keep", help="keep the run folder here (for a look at the maps)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import keras

    global COLOURS
    COLOURS = {k: v for i, (k, v) in enumerate(COLOURS.items()) if i < args.colours or (k == "none" and not args.no_none)}
    args.classes = len(COLOURS)
    rng = np.random.default_rng(args.seed)
    xt, yt, _ = patch_images(args.classes * args.train, rng, args.classes)
    xv, yv, boxes = patch_images(args.classes * args.val, rng, args.classes)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_folder(tmp / "data" / "train", xt, yt)
        write_folder(tmp / "data" / "val", xv, yv)
        recipe = build_recipe({
            "name": "patches", "data": {"dir": str(tmp / "data"), "image_size": SIZE, "augment": {"flip": "none"},
                                        "cache_dir": str(tmp / "cache"), "seed": args.seed},
            "model": {"backbone": "resnet20", "weights": "none"},
            "schedule": [{"name": "all", "epochs": args.epochs, "train": "all", "lr": 3e-3, "batchnorm": "train"}],
            "train": {"batch_size": 32, "precision": "float32", "seed": args.seed},
        })
        t0 = time.perf_counter()
        result = train(recipe, out=tmp / "runs", name="run")
        train_s = time.perf_counter() - t0
        model = keras.saving.load_model(result.run_dir / "model.keras")
        if args.keep:
            import shutil

            shutil.copytree(result.run_dir, args.keep, dirs_exist_ok=True)
            np.savez(Path(args.keep) / "val.npz", x=xv, y=yv, boxes=boxes)
    cam = GradCam(model)
    # The run's classes sort alphabetically; ours are in COLOURS order.
    names = list(COLOURS)[:args.classes]
    y_run = np.array([sorted(names).index(names[i]) for i in yv])
    batch = 32
    cam(xv[:batch], batch_size=batch)
    predict_probs(model, xv[:batch], batch)
    t0 = time.perf_counter()
    maps, probs = cam(xv, batch_size=batch)
    cam_s = (time.perf_counter() - t0) / len(xv)
    t0 = time.perf_counter()
    predict_probs(model, xv, batch)
    pred_s = (time.perf_counter() - t0) / len(xv)
    acc = float((probs.argmax(axis=1) == y_run).mean())
    has_patch = np.array([COLOURS[names[i]] is not None for i in yv])
    figures = {
        "dataset": f"generated patches: {SIZE} px grey texture + one {PATCH} px square of {args.colours} colours"
                   f"{'' if args.no_none else ' or none'}, "
                   f"{args.classes * args.train} train, {args.classes * args.val} val, seed {args.seed}",
        "model": f"resnet20 from scratch, {args.epochs} epochs, train {train_s:.0f} s",
        "val_accuracy": round(acc, 4),
        "localisation_rate": round(localisation_rate(maps[has_patch], boxes[has_patch]), 4),
        "localisation_rate_per_class": {n: round(localisation_rate(maps[yv == i], boxes[yv == i]), 4)
                                        for i, n in enumerate(names) if COLOURS[n] is not None},
        "gradcam_ms_per_image": round(cam_s * 1000, 3),
        "predict_ms_per_image": round(pred_s * 1000, 3),
        "gradcam_over_predict": round(cam_s / pred_s, 3),
        "cpu": cpu_model(), "machine": platform.machine(), "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(figures, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
