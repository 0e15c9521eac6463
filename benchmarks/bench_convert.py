"""`resnet-tl weights convert` on a ResNet-50 checkpoint: wall time and peak memory, whole process.

One run, side by side, each a fresh process under /usr/bin/time -v:

  A  resnet-tl weights convert CKPT --out m.keras   (read 98 MB of safetensors, map, build, save)
  B  the same model built with random weights and saved, no checkpoint (the floor: import + build + save)

The checkpoint has torchvision's resnet50 key layout and shapes with random
values (size and work are those of the real file; no download).

    python benchmarks/bench_convert.py [--backbone resnet50v1.5] [--image-size 224] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

_BASELINE = """
import sys
from resnet_tl.models.classifier import build_classifier
from resnet_tl.recipe import ModelConfig
m = build_classifier(ModelConfig(backbone=sys.argv[1], weights="none"), 1000, int(sys.argv[2]))
m.save(sys.argv[3])
"""


def _timed(cmd: list[str]) -> dict:
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    if p.returncode != 0:
        raise SystemExit(p.stderr[-2000:])
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", p.stderr)
    h, m, s = wall.groups()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return {"wall_s": round(int(h or 0) * 3600 + int(m) * 60 + float(s), 2), "peak_rss_mib": round(rss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet50v1.5")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from safetensors.numpy import save_file

    from resnet_tl.models.pretrained import expected_tensors

    rng = np.random.default_rng(0)
    tensors = {k: (rng.standard_normal(s).astype(np.float32) * 0.01 if s else np.array(0, np.int64))
               for k, s in expected_tensors(args.backbone, 1000).items()}
    for k in tensors:
        if k.endswith("running_var"):
            tensors[k] = np.abs(tensors[k]) + 1.0
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "model.safetensors"
        save_file(tensors, str(ckpt))
        size_mb = ckpt.stat().st_size / 2**20
        convert = _timed([sys.executable, "-m", "resnet_tl", "weights", "convert", str(ckpt),
                          "--out", str(Path(tmp) / "c.keras"), "--image-size", str(args.image_size), "--json"])
        baseline = _timed([sys.executable, "-c", _BASELINE, args.backbone, str(args.image_size), str(Path(tmp) / "b.keras")])
    doc = {"backbone": args.backbone, "image_size": args.image_size, "checkpoint_mib": round(size_mb, 1),
           "convert": convert, "build_and_save_random": baseline,
           "extra_wall_s": round(convert["wall_s"] - baseline["wall_s"], 2),
           "extra_peak_mib": round(convert["peak_rss_mib"] - baseline["peak_rss_mib"], 1)}
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print(f"{args.backbone}, {args.image_size} px, checkpoint {doc['checkpoint_mib']} MiB")
    print("| process | wall s | peak RSS MiB |\n| --- | --- | --- |")
    print(f"| weights convert | {convert['wall_s']} | {convert['peak_rss_mib']} |")
    print(f"| build + save, random weights | {baseline['wall_s']} | {baseline['peak_rss_mib']} |")


if __name__ == "__main__":
    main()
