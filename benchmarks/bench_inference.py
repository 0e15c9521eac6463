"""The shared inference path (issue 23 part 2) on this CPU: two checkouts side by side, both backends.

    PYTHONPATH=. python benchmarks/bench_inference.py --before /tmp/before [--n 256] [--size 128] [--batch 32] [--rounds 3] [--json]

`--before` is a folder holding another checkout's `resnet_tl/` package (e.g.
`git archive main resnet_tl | tar -x -C /tmp/before`); this checkout is "after".
Each (checkout, backend) pair runs in a process of its own, one after another,
and times the two public entry points every caller uses:

  probs    resnet_tl.models.batched.predict_probs(classifier, x, batch)  (evaluate, finish, export's reference, bench)
  file     resnet_tl.formats.predictor.load_predictor("model.keras")(x)  (predict, export's parity check)

Model: ResNet-50 (keras.applications layout, random weights) at --size px, 10
classes, saved once as model.keras and loaded by every process. Input: --n
uint8 images in a .npy memmap, as evaluate and export read a split. Each entry
point is called once to compile, then timed over all --n images --rounds
times; the figure is the median round's img/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(work: Path, batch: int, rounds: int) -> dict:
    import numpy as np

    from resnet_tl.formats.predictor import load_predictor
    from resnet_tl.models.batched import predict_probs
    from resnet_tl.models.saving import load_keras_model

    x = np.load(work / "x.npy", mmap_mode="r")
    model = load_keras_model(work / "model.keras")
    predictor = load_predictor(work / "model.keras", batch_size=batch)
    calls = {"probs": lambda: predict_probs(model, x, batch), "file": lambda: predictor(x)}
    out = {}
    for name, call in calls.items():
        t = time.perf_counter()
        first = call()
        compile_s = time.perf_counter() - t
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
        out[name] = {"images_per_s": round(len(x) / statistics.median(times), 2), "first_call_s": round(compile_s, 2),
                     "round_s": [round(s, 3) for s in times], "checksum": float(np.asarray(first, np.float64).sum())}
    return out


def prepare(work: Path, n: int, size: int) -> None:
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from resnet_tl.models.classifier import build_classifier
    from resnet_tl.recipe import build_recipe

    if (work / "model.keras").is_file() and np.load(work / "x.npy", mmap_mode="r").shape == (n, size, size, 3):
        return
    work.mkdir(parents=True, exist_ok=True)
    recipe = build_recipe({"model": {"backbone": "resnet50", "weights": "none"}})
    build_classifier(recipe.model, 10, size).save(work / "model.keras")
    np.save(work / "x.npy", np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="folder with the other checkout's resnet_tl/")
    ap.add_argument("--work", default="/tmp/bench_inference")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.work)
    if args.child:
        print(json.dumps(child(work, args.batch, args.rounds)))
        return
    prepare(work, args.n, args.size)
    results = {}
    for backend in args.backends:
        for label, path in (("before", Path(args.before).resolve()), ("after", ROOT)):
            env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(path), TF_CPP_MIN_LOG_LEVEL="3")
            p = subprocess.run([sys.executable, __file__, "--child", "--before", args.before, "--work", str(work),
                                "--batch", str(args.batch), "--rounds", str(args.rounds)],
                               check=False, env=env, capture_output=True, text=True, timeout=1800)
            if p.returncode != 0:
                sys.exit(f"{backend} {label}: exit {p.returncode}\n{p.stderr[-3000:]}")
            results[f"{backend}/{label}"] = json.loads(p.stdout.strip().splitlines()[-1])
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    doc = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu, "cpus": len(os.sched_getaffinity(0)),
           "n": args.n, "size": args.size, "batch": args.batch, "rounds": args.rounds, "results": results}
    if args.json:
        print(json.dumps(doc, indent=1))
        return
    print(f"{doc['date']}  {cpu}, {doc['cpus']} CPUs; ResNet-50 {args.size} px, {args.n} images, batch {args.batch}")
    print("| backend | entry point | before img/s | after img/s | after / before | first call before / after (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for backend in args.backends:
        b, a = results[f"{backend}/before"], results[f"{backend}/after"]
        for name in ("probs", "file"):
            ratio = a[name]["images_per_s"] / b[name]["images_per_s"]
            print(f"| {backend} | {name} | {b[name]['images_per_s']} | {a[name]['images_per_s']} | {ratio:.2f}x | "
                  f"{b[name]['first_call_s']} / {a[name]['first_call_s']} |")


if __name__ == "__main__":
    main()
