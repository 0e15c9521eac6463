"""predict over a folder: throughput against plain Keras, and peak memory at 10k vs 100k files.

    PYTHONPATH=. python benchmarks/bench_predict.py [--n 10000] [--tiny 10000 100000] [--work /tmp/bench_predict] [--json]
    PYTHONPATH=. python benchmarks/bench_predict.py --tta-run runs/quickstart-...   # TTA: accuracy change and cost

Model: the `mobile` recipe's classifier (ResNet-18, 128 px, 5 classes, random
weights), saved as .keras and exported to full-int8 TFLite through
`resnet_tl.export.exporter.export_run` (calibrated on 200 of the benchmark images).
Images: --n generated 500x375 JPEGs (smooth colour fields plus noise, ~60 KB
each) under --work, never in the repository.

Throughput, each contender in its own process, one after the other in one run,
timed from loading the model to having every prediction (imports excluded):
  peer    keras.utils.image_dataset_from_directory(labels=None, 128x128, batch 32) + model.predict
  keras   resnet_tl.inference.predict.predict_stream on the .keras model, rows written as JSON Lines
  int8    the same on model_int8.tflite
Top-1 agreement is over the same files, matched by path.

Memory: `/usr/bin/time -v python -m resnet_tl predict model_int8.tflite DIR
--format jsonl --output F` over --tiny folders of 32x32 JPEGs, with the
`small-images` recipe's ResNet-20 (32 px, int8: cheap enough for 100k files
on 2 cores); peak RSS of the whole process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
IMAGE_SIZE = 128
CLASSES = 5


# ------------------------------------------------------------------ images
def _write_jpeg(args) -> None:
    from PIL import Image

    path, w, h, seed = args
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    px = np.asarray(field, np.int16) + rng.normal(0, 8, (h, w, 3)).astype(np.int16)
    Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(path, quality=90)


def make_images(folder: Path, n: int, w: int, h: int, seed: int) -> Path:
    """n JPEGs in folder/img/ (one subfolder: image_dataset_from_directory wants one level); reused if complete."""
    d = folder / "img"
    if d.is_dir() and sum(1 for _ in os.scandir(d)) == n:
        return folder
    d.mkdir(parents=True, exist_ok=True)
    with Pool(len(os.sched_getaffinity(0))) as pool:
        pool.map(_write_jpeg, [(d / f"{i:06d}.jpg", w, h, seed + i) for i in range(n)], chunksize=256)
    return folder


# ------------------------------------------------------------------- model
def mobile_run(work: Path, images: Path, recipe=None, name: str = "mobile-run") -> Path:
    """A run folder with the mobile recipe's model (random weights) and its int8 TFLite export."""
    from resnet_tl.data.decode import decode_image
    from resnet_tl.export.exporter import export_run
    from resnet_tl.fileio import atomic_write_text
    from resnet_tl.models.classifier import build_classifier
    from resnet_tl.recipe import dump_recipe, load_recipe

    run = work / name
    if (run / "export" / "model_int8.tflite").is_file():
        return run
    recipe = recipe or load_recipe("mobile", ["model.weights=none"])  # random weights: offline, same network
    size = recipe.data.image_size
    run.mkdir(parents=True, exist_ok=True)
    model = build_classifier(recipe.model, CLASSES, size)
    files = sorted((images / "img").iterdir())[:200]
    rep = np.stack([decode_image(f, size) for f in files])
    spread_head(model, rep)
    model.save(run / "model.keras")
    atomic_write_text(run / "recipe.yaml", dump_recipe(recipe))
    atomic_write_text(run / "labels.txt", "".join(f"c{i}\n" for i in range(CLASSES)))
    export_run(run, ["keras", "tflite"], ["int8"], check=False, representative=rep)
    return run


def spread_head(model, images: np.ndarray, seed: int = 0) -> None:
    """Random weights put every image in one class, which makes top-1 agreement meaningless.
    Set the head's Dense layer to a random projection of the standardised features instead
    (still untrained), so the predicted classes spread over all five."""
    from resnet_tl.models.classifier import feature_extractor, head_of

    feats = np.asarray(feature_extractor(model).predict(images.astype(np.float32), verbose=0), np.float64)
    feats = feats.reshape(len(feats), -1)
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    r = np.random.default_rng(seed).normal(0, 2.0 / np.sqrt(feats.shape[1]), (feats.shape[1], CLASSES))
    dense = [layer for layer in head_of(model).layers if layer.__class__.__name__ == "Dense"][-1]
    dense.set_weights([(r / sd[:, None]).astype(np.float32), (-(mu / sd) @ r).astype(np.float32)])


# ---------------------------------------------------------------- children
def child(kind: str, model: str, folder: str, out: str) -> None:
    """Runs in its own process: predict every image, write {path: top-1} and the seconds to `out`."""
    if kind == "peer":
        import keras

        import resnet_tl.models.classifier  # noqa: F401  registers the Preprocess layer the saved model uses

        t0 = time.perf_counter()
        m = keras.saving.load_model(model, compile=False)
        ds = keras.utils.image_dataset_from_directory(folder, labels=None, image_size=(IMAGE_SIZE, IMAGE_SIZE),
                                                      batch_size=32, shuffle=False)
        probs = m.predict(ds, verbose=0)
        seconds = time.perf_counter() - t0
        top1 = dict(zip(ds.file_paths, map(int, np.argmax(probs, 1))))
    else:
        from resnet_tl.inference.predict import predict_stream

        t0 = time.perf_counter()
        stream = predict_stream(model, [folder], top_k=1, batch_size=32)
        names = stream.names
        top1 = {}
        with open(out + ".jsonl", "w") as f:
            for row in stream:
                f.write(json.dumps(row) + "\n")
                if row["error"] is None:
                    top1[os.path.abspath(row["path"])] = names.index(row["top"][0]["label"])
        seconds = time.perf_counter() - t0
    Path(out).write_text(json.dumps({"seconds": seconds, "top1": top1}))


def run_child(kind: str, model: Path, folder: Path, work: Path) -> dict:
    out = work / f"result_{kind}.json"
    subprocess.run([sys.executable, __file__, "--child", kind, str(model), str(folder), str(out)], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"})
    r = json.loads(out.read_text())
    r["top1"] = {os.path.abspath(k): v for k, v in r["top1"].items()}
    return r


def agreement(a: dict, b: dict) -> float:
    common = a.keys() & b.keys()
    return sum(a[k] == b[k] for k in common) / max(len(common), 1)


def peak_rss(model: Path, folder: Path, work: Path) -> dict:
    out = work / f"rss_{folder.name}.jsonl"
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "resnet_tl", "predict", str(model), str(folder),
                        "--format", "jsonl", "--output", str(out)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"})
    if p.returncode != 0:
        raise SystemExit(p.stderr[-2000:])
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    rows = sum(1 for _ in open(out))
    return {"files": rows, "peak_rss_mb": round(kb / 1024, 1), "seconds": round(time.perf_counter() - t0, 1)}


def tta_figures(run: str, work: Path) -> dict:
    """Validation accuracy and prediction time of a trained run, plain and with --tta."""
    from resnet_tl.evaluation.evaluate import evaluate

    plain = evaluate(run, out=work / "tta-eval" / "plain")
    tta = evaluate(run, out=work / "tta-eval" / "tta", tta=True)
    return {"run": run, "n": plain["n"],
            "plain": {"accuracy": plain["accuracy"], "loss": round(plain["loss"], 4), "seconds": plain["seconds"]},
            "tta": {"accuracy": tta["accuracy"], "loss": round(tta["loss"], 4), "seconds": tta["seconds"]},
            "accuracy_change": round(tta["accuracy"] - plain["accuracy"], 4),
            "cost_x": round(tta["seconds"] / max(plain["seconds"], 1e-9), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tta-run", help="Only measure TTA on this trained run's validation split.")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--tiny", type=int, nargs="*", default=[10000, 100000])
    ap.add_argument("--work", default="/tmp/bench_predict")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=4)
    a = ap.parse_args()
    if a.child:
        return child(*a.child)
    work = Path(a.work)
    if a.tta_run:
        return _show({"machine": _machine(), "date": time.strftime("%Y-%m-%d"), "tta": tta_figures(a.tta_run, work)}, a.json)
    real = make_images(work / f"real{a.n}", a.n, 500, 375, seed=0)
    run = mobile_run(work, real)
    keras_model, int8 = run / "export" / "model.keras", run / "export" / "model_int8.tflite"
    result: dict = {"machine": _machine(), "date": time.strftime("%Y-%m-%d"), "n": a.n}
    if not a.skip_throughput:
        peer = run_child("peer", keras_model, real / "img", work)
        ours = run_child("keras", keras_model, real / "img", work)
        q = run_child("int8", int8, real / "img", work)
        result["throughput"] = {
            name: {"seconds": round(r["seconds"], 1), "images_per_s": round(len(r["top1"]) / r["seconds"], 1),
                   "x_peer": round(peer["seconds"] / r["seconds"], 2), "classes_predicted": len(set(r["top1"].values()))}
            for name, r in (("peer", peer), ("keras", ours), ("int8", q))
        }
        result["agreement"] = {"keras_vs_peer": round(agreement(ours["top1"], peer["top1"]), 4),
                               "int8_vs_peer": round(agreement(q["top1"], peer["top1"]), 4),
                               "int8_vs_keras": round(agreement(q["top1"], ours["top1"]), 4),
                               "files": len(peer["top1"])}
        _show(result, a.json, partial=True)
    rss = {}
    # The memory runs measure the file pipeline, so they use a model that is cheap at 100k files:
    # the small-images recipe's ResNet-20 at 32 px, int8 (the mobile model would take an hour here).
    from resnet_tl.recipe import load_recipe

    tiny_model = None
    for n in a.tiny:
        folder = make_images(work / f"tiny{n}", n, 32, 32, seed=1)
        if tiny_model is None:
            tiny_model = mobile_run(work, folder, load_recipe("small-images"), "small-run") / "export" / "model_int8.tflite"
        rss[n] = peak_rss(tiny_model, folder / "img", work)
        _show({"rss": rss}, a.json, partial=True)
    result["rss"] = rss
    if len(a.tiny) >= 2:
        result["rss_growth_mb"] = round(rss[a.tiny[-1]]["peak_rss_mb"] - rss[a.tiny[0]]["peak_rss_mb"], 1)
    _show(result, a.json)


def _machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def _show(result: dict, as_json: bool, partial: bool = False) -> None:
    print(json.dumps(result, indent=None if partial else 2), file=sys.stderr if partial else sys.stdout, flush=True)


if __name__ == "__main__":
    main()
