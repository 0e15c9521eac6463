"""`resnet-tl data audit`: how well it finds planted problems, and how long 10,000 images take.

quality (seeded, printed as one JSON document):
  flipped labels  pooled features of well separated classes (ReLU'd Gaussian clusters, D=512,
                  10 classes, 5,000 images; a stand-in for a backbone that separates the data),
                  5% of labels flipped at random; precision/recall of the flagged set against the
                  flips, for our rule and for cleanlab.filter.find_label_issues on the same
                  out-of-fold probabilities. Seeds 0, 1, 2.
  duplicates      data/sample (600 generated shape images, 4 classes) decoded at 32 px, plus 60 copies
                  of random originals resized to 40..90 px and re-encoded as JPEG (quality 70..95),
                  every copy put in the other split; features: the pixels. Recall of the injected
                  pairs, and pairs found among the 600 originals (false pairs; none are copies).
speed:
  a folder of 10,000 generated 32 px PNGs (10 classes) audited twice through `audit_folder`
  with a CIFAR ResNet-20 (random weights); the second audit reads the cached features, and its
  wall time is the figure (goal: < 60 s on a 2-core CPU).

    python benchmarks/bench_audit.py [--part quality|speed|all] [--images 10000]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resnet_tl.data import audit, decode_bytes, decode_image  # noqa: E402
from resnet_tl.data.phash import hashes  # noqa: E402
from resnet_tl.sysinfo import cpu_model  # noqa: E402


def _pr(flagged: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((flagged & truth).sum())
    return {"precision": round(tp / max(int(flagged.sum()), 1), 4), "recall": round(tp / int(truth.sum()), 4), "flagged": int(flagged.sum())}


def flipped_labels(seed: int, n=5000, classes=10, dims=512, noise=2.0, rate=0.05) -> dict:
    from cleanlab.filter import find_label_issues

    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, n)
    feats = np.maximum(rng.normal(0, 1, (classes, dims))[truth] + rng.normal(0, noise, (n, dims)), 0).astype("float32")
    flipped = rng.random(n) < rate
    given = truth.copy()
    given[flipped] = (truth[flipped] + rng.integers(1, classes, flipped.sum())) % classes
    x, var = audit.pca(feats)
    probs = audit.oof_probabilities(x, var, given, classes, seed=seed)
    ours = np.zeros(n, bool)
    ours[[i.index for i in audit.label_issues(probs, given)]] = True
    return {"seed": seed, "flipped": int(flipped.sum()), "ours": _pr(ours, flipped),
            "cleanlab": _pr(find_label_issues(given, probs), flipped)}


def duplicates(seed: int = 0, copies: int = 60) -> dict:
    paths = sorted((ROOT / "data" / "sample").glob("*/*"))
    originals = np.stack([decode_image(p, 32) for p in paths])
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(paths), copies, replace=False)
    made = []
    for i in picked:
        buf = io.BytesIO()
        size, quality = int(rng.integers(40, 91)), int(rng.integers(70, 96))
        Image.open(paths[i]).convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=quality)
        made.append(decode_bytes(buf.getvalue(), 32))
    pixels = np.concatenate([originals, np.stack(made)])
    x, _ = audit.pca(pixels.reshape(len(pixels), -1).astype("float32"))
    found = {(p["i"], p["j"]) for p in audit.near_duplicates(x, hashes(pixels))}
    injected = {(int(i), len(originals) + k) for k, i in enumerate(picked)}
    false = {p for p in found if p not in injected}
    return {"originals": len(originals), "copies": copies, "recall": round(len(found & injected) / copies, 4),
            "false_pairs": len(false), "false_pairs_among_originals": sum(j < len(originals) for _, j in false)}


def speed(n: int) -> dict:
    from resnet_tl.evaluation.audit import audit_folder

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i in range(n):
            # Smooth random colour fields: distinct images that still look like something to a hash.
            img = np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((8, 8, 1))) + rng.normal(0, 12, (32, 32, 3))
            path = tmp / "data" / f"c{i % 10}" / f"{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
        kw = dict(backbone="resnet20", weights="none", image_size=32, cache_dir=str(tmp / "cache"), out=str(tmp / "audit"))
        t0 = time.perf_counter()
        first = audit_folder(tmp / "data", **kw)
        t1 = time.perf_counter()
        second = audit_folder(tmp / "data", **kw)
        t2 = time.perf_counter()
    assert second["features_cached"] and not first["features_cached"]
    return {"images": n, "first_audit_s": round(t1 - t0, 1), "cached_audit_s": round(t2 - t1, 1),
            "cached_split": second["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("quality", "speed", "all"), default="all")
    ap.add_argument("--images", type=int, default=10000)
    args = ap.parse_args()
    figures: dict = {"cpu": cpu_model(), "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}
    if args.part in ("quality", "all"):
        figures["flipped_labels"] = [flipped_labels(s) for s in (0, 1, 2)]
        figures["duplicates"] = duplicates()
    if args.part in ("speed", "all"):
        figures["speed"] = speed(args.images)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
