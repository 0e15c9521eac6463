"""Make the README's two pictures of issue 25 from data/sample (a few minutes on a CPU).

docs/gradcam_overlays.png  `predict --explain` overlays of four data/sample images
docs/audit_section.png     report.html's "Data audit" section (headless Chromium screenshot) after
                           `data audit --run` on a copy of data/sample with 12 labels flipped
                           and 6 resized JPEG copies put into another class folder

    python docs/make_explain_figures.py [--epochs 8]
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resnet_tl.evaluation.audit import audit_folder  # noqa: E402
from resnet_tl.evaluation.html_report import render_report  # noqa: E402
from resnet_tl.inference.explain import explain_files  # noqa: E402
from resnet_tl.recipe import build_recipe  # noqa: E402
from resnet_tl.runs import RunPaths  # noqa: E402
from resnet_tl.training.train import train  # noqa: E402


def planted(tmp: Path) -> Path:
    data = tmp / "sample"
    shutil.copytree(ROOT / "data" / "sample", data)
    rng = random.Random(0)
    classes = sorted(p.name for p in data.iterdir())
    for cls in classes:
        files = sorted((data / cls).iterdir())
        for f in rng.sample(files, 3):  # flipped: moved into another class's folder
            other = rng.choice([c for c in classes if c != cls])
            f.rename(data / other / f"was_{cls}_{f.name}")
        for f in rng.sample(files[100:], 2 if cls != "stripes" else 0):  # resized, re-encoded copies
            if f.exists():
                Image.open(f).convert("RGB").resize((48, 48)).save(data / cls / f"copy_{f.stem}.jpg", quality=80)
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = planted(tmp)
        recipe = build_recipe({
            "name": "sample", "data": {"dir": str(ROOT / "data" / "sample"), "image_size": 32, "cache_dir": str(tmp / "cache"),
                                       "augment": {"flip": "horizontal"}},
            "model": {"backbone": "resnet20", "weights": "none"},
            "schedule": [{"name": "all", "epochs": args.epochs, "train": "all", "lr": 3e-3, "batchnorm": "train"}],
            "train": {"batch_size": 32},
        })
        run = train(recipe, out=tmp / "runs", name="run").run_dir
        picks = [str(next((ROOT / "data" / "sample" / c).glob("*_01[0-9].png"))) for c in ("circle", "square", "triangle", "stripes")]
        rows = explain_files(run, picks, tmp / "why")["rows"]
        sheet = Image.new("RGB", (4 * 200 + 12, 200), "white")
        for i, r in enumerate(rows):
            sheet.paste(Image.open(r["overlay"]).resize((200, 200)), (i * 204, 0))
        sheet.save(ROOT / "docs" / "gradcam_overlays.png", optimize=True)
        audit_folder(data, run=run)
        html = render_report(RunPaths(run))
        start = html.index("<section id='audit'>")
        page = html[:html.index("<body>") + 6] + html[start:html.index("</section>", start) + 10] + "</body></html>"
        (tmp / "audit.html").write_text(page)
        shot = ROOT / "docs" / "audit_section.png"
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
                        "--window-size=1000,900", (tmp / "audit.html").as_uri()], check=True, capture_output=True, timeout=120)
    print("wrote docs/gradcam_overlays.png and docs/audit_section.png")


if __name__ == "__main__":
    main()
