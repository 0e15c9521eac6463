"""`resnet-tl predict MODEL FOLDER` with 1 CPU against 2: does decoding scale to the CPUs the process may use?

    PYTHONPATH=. python benchmarks/bench_decode_workers.py [--n 400] [--cpus 0 0,1] [--rounds 2] [--json]

The process is pinned with `taskset -c CPUS`; resnet-tl sizes its decode threads
by the CPUs it may use (`resnet_tl.cpus.usable_cpus`), so the pinning alone
changes how many decode at once, as a container's CPU limit would. The model is
the small-images recipe's ResNet-20 at 32 px (random weights): its forward pass
is a few ms per batch, so the figure is decoding --n 500x375 JPEGs (~60 KB, as
benchmarks/bench_predict.py writes them). Whole process, start to exit, best of
--rounds; `decode_only` is the same files through `decode_bytes` on a thread
pool of that many workers in this process, without the model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_predict import make_images


def model_file(work: Path) -> Path:
    path = work / "resnet20_32.keras"
    if not path.is_file():
        from resnet_tl.models.classifier import build_classifier
        from resnet_tl.recipe import load_recipe

        build_classifier(load_recipe("small-images", ["model.weights=none"]).model, 5, 32).save(path)
    return path


def decode_only(files: list[Path], workers: int) -> float:
    from resnet_tl.data.decode import decode_bytes

    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda f: decode_bytes(f.read_bytes(), 32), files))
    return len(files) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/bench_decode_workers")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--cpus", nargs="+", default=["0", "0,1"], help="taskset CPU lists to compare")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    folder = make_images(work / "jpegs", args.n, 500, 375, 0)
    files = sorted((folder / "img").iterdir())
    model = model_file(work)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    rows = []
    for cpus in args.cpus:
        best = None
        for _ in range(args.rounds):
            out = work / "rows.jsonl"
            t = time.perf_counter()
            p = subprocess.run(["taskset", "-c", cpus, sys.executable, "-m", "resnet_tl", "predict", str(model), str(folder),
                                "--format", "jsonl", "--output", str(out)], check=False, env=env, capture_output=True, text=True)
            s = time.perf_counter() - t
            if p.returncode != 0:
                sys.exit(f"taskset -c {cpus}: exit {p.returncode}\n{p.stderr[-2000:]}")
            assert len(out.read_text().splitlines()) == args.n
            best = s if best is None else min(best, s)
        workers = len(cpus.split(","))
        rows.append({"cpus": cpus, "workers": workers, "process_s": round(best, 2), "images_per_s": round(args.n / best, 1),
                     "decode_only_images_per_s": round(max(decode_only(files, workers) for _ in range(args.rounds)), 1)})
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "")
    doc = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu, "load_avg_1m": os.getloadavg()[0],
           "n": args.n, "rows": rows}
    if args.json:
        print(json.dumps(doc, indent=1))
        return
    print(f"{doc['date']}  {cpu}; load average {doc['load_avg_1m']:.1f}; {args.n} JPEGs 500x375, ResNet-20 32 px")
    print("| CPUs (taskset) | decode threads | predict, whole process (img/s) | decode only (img/s) |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['cpus']} | {r['workers']} | {r['images_per_s']} | {r['decode_only_images_per_s']} |")


if __name__ == "__main__":
    main()
