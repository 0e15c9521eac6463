"""Train-serve resize skew: MediaPipe's agreement on real-size photo files, data.resize antialias vs bilinear.

    PYTHONPATH=. python benchmarks/bench_resize_skew.py [--per-class 120] [--size 64] [--epochs 8] [--json out.json]

Generates real-size JPEG photos (tests/images.py `photo_folder`, 320x240, a
fine texture that aliases when shrunk without antialiasing), trains the
`mobile` recipe (ResNet-18, weights none: offline) at --size px once per
data.resize, exports float32 and int8 TFLite with the parity check and reports,
per artifact: MediaPipe's top-1 agreement with Keras on the image FILES
(MediaPipe decodes and resizes them itself) and on our decoder's pixels,
with the gate's one-sided 95% bounds, and the Keras validation accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from images import photo_folder  # noqa: E402

from resnet_tl.errors import ExportCheckFailed  # noqa: E402
from resnet_tl.export.exporter import export_run  # noqa: E402
from resnet_tl.recipe import load_recipe  # noqa: E402
from resnet_tl.sysinfo import cpu_model  # noqa: E402
from resnet_tl.training.train import train  # noqa: E402


def one(resize: str, data: Path, work: Path, size: int, epochs: int, val_split: float) -> dict:
    schedule = f"[{{name: all, epochs: {epochs}, train: all, lr: 0.002, warmup_epochs: 1, decay: cosine, batchnorm: train}}]"
    recipe = load_recipe("mobile", [f"data.dir={data}", f"data.image_size={size}", f"data.resize={resize}",
                                    f"data.val_split={val_split}", f"data.cache_dir={work / 'cache'}",
                                    "model.weights=none", f"schedule={schedule}"])
    t = time.time()
    run = train(recipe, out=work / "runs", name=f"skew-{resize}").run_dir
    train_s = time.time() - t
    try:
        result = export_run(run, ["tflite"], ["none", "int8"])
        ok = True
    except ExportCheckFailed as e:
        result, ok = e.result, False
    rows = []
    for a in result.artifacts:
        p = a.parity or {}
        rows.append({"artifact": a.path, "runtime": a.runtime, "check": a.check, "agreement": p.get("agreement"),
                     "agreement_same_pixels": p.get("agreement_same_pixels"), "n": p.get("n"),
                     "agreement_interval": a.gates.get("agreement", {}).get("interval"),
                     "accuracy": p.get("accuracy"), "keras_accuracy": p.get("keras_accuracy"), "note": a.note})
    return {"resize": resize, "train_seconds": round(train_s, 1), "export_ok": ok, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=120)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--val-split", type=float, default=0.34)
    ap.add_argument("--work", type=Path, default=Path("/tmp/resnet-tl-bench-skew"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    data = args.work / "photos"
    if not data.is_dir():
        photo_folder(data, args.per_class, w=320, h=240)
    doc = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_model(), "size": args.size, "photo": "320x240 JPEG",
           "per_class": args.per_class, "epochs": args.epochs, "results": []}
    for resize in ("antialias", "bilinear"):
        doc["results"].append(one(resize, data, args.work, args.size, args.epochs, args.val_split))
        print(json.dumps(doc["results"][-1], indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
