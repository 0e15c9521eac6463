"""Warm starts (issue 23 part 4): the first epoch of a repeated `resnet-tl train quickstart`, compile cache off and on.

    PYTHONPATH=. python benchmarks/bench_warm_start.py [--backend jax] [--epochs 3] [--json]

For each setting (RESNET_TL_COMPILE_CACHE_MB=0, then the default), a fresh
XDG_CACHE_HOME, and the same quickstart run twice in processes of their own.
Both settings share the decoded-image cache's effect (the second run reads
decoded images either way), so the difference between them is compilation.
Figures from each run's history.csv: the first epoch, the median of the
others, and the whole process.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(work: Path, name: str, env: dict, epochs: int) -> dict:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "resnet_tl", "train", "quickstart", "--out", str(work / "runs"), "--name", name,
                        "--set", f"schedule.0.epochs={epochs}", "--json"], check=False, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{name}: exit {p.returncode}\n{p.stderr[-3000:]}")
    with open(work / "runs" / name / "history.csv", newline="") as f:
        ep = [float(r["seconds"]) for r in csv.DictReader(f)]
    return {"process_s": round(wall, 2), "first_epoch_s": ep[0], "steady_epoch_s": statistics.median(ep[1:]), "epoch_s": ep}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/bench_warm_start")
    ap.add_argument("--backend", default="jax")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    results = {}
    for label, mb in (("cache off", "0"), ("cache on", "")):
        env = dict(os.environ, KERAS_BACKEND=args.backend, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3",
                   XDG_CACHE_HOME=str(work / label.replace(" ", "-") / "xdg"), RESNET_TL_COMPILE_CACHE_MB=mb)
        if not mb:
            env.pop("RESNET_TL_COMPILE_CACHE_MB")
        results[label] = [one_run(work / label.replace(" ", "-"), f"run{i}", env, args.epochs) for i in (1, 2)]
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "")
    doc = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu, "cpus": len(os.sched_getaffinity(0)),
           "load_avg_1m": os.getloadavg()[0], "backend": args.backend, "epochs": args.epochs, "results": results}
    if args.json:
        print(json.dumps(doc, indent=1))
        return
    print(f"{doc['date']}  {cpu}, {doc['cpus']} CPUs, load {doc['load_avg_1m']:.1f}; {args.backend}; quickstart, {args.epochs} epochs")
    print("| compile cache | run | first epoch (s) | steady epoch (s) | first / steady | whole process (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, runs in results.items():
        for i, r in enumerate(runs, 1):
            print(f"| {label} | {i} | {r['first_epoch_s']:.2f} | {r['steady_epoch_s']:.2f} | "
                  f"{r['first_epoch_s'] / r['steady_epoch_s']:.1f}x | {r['process_s']:.1f} |")


if __name__ == "__main__":
    main()
