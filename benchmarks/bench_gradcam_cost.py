"""Grad-CAM's cost next to a plain prediction, per image, for a small and a large backbone.

Random weights (the cost does not depend on them), 64 images, batch 32; each round times
`predict_probs(model, x, 32)` then `GradCam(model)(x, batch_size=32)` (sub-models built once, before
the rounds); 5 rounds after a warm-up, medians. Goal (issue 25): Grad-CAM < 2x the prediction.

    python benchmarks/bench_gradcam_cost.py [--rounds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_tl.inference.gradcam import GradCam  # noqa: E402
from resnet_tl.models.batched import predict_probs  # noqa: E402
from resnet_tl.models.classifier import build_classifier  # noqa: E402
from resnet_tl.recipe import build_recipe  # noqa: E402
from resnet_tl.sysinfo import cpu_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for backbone, size in (("resnet20", 32), ("resnet50", 64)):
        model = build_classifier(build_recipe({"model": {"backbone": backbone}}).model, 10, size)
        x = np.random.default_rng(0).integers(0, 255, (64, size, size, 3)).astype(np.uint8)
        cam = GradCam(model)
        predict_probs(model, x, 32)
        cam(x, batch_size=32)
        t_pred, t_cam = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            predict_probs(model, x, 32)
            t1 = time.perf_counter()
            cam(x, batch_size=32)
            t2 = time.perf_counter()
            t_pred.append((t1 - t0) / len(x) * 1000)
            t_cam.append((t2 - t1) / len(x) * 1000)
        p, c = statistics.median(t_pred), statistics.median(t_cam)
        rows.append({"backbone": backbone, "size": size, "predict_ms_per_image": round(p, 3),
                     "gradcam_ms_per_image": round(c, 3), "ratio": round(c / p, 3)})
    print(json.dumps({"rows": rows, "cpu": cpu_model(), "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")},
                     indent=None if args.json else 2))


if __name__ == "__main__":
    main()
