"""Converted models against torchvision itself (needs torch + torchvision; not part of CI).

For resnet18, resnet34 and resnet50: a torchvision model with random weights
(BatchNorm statistics and affine parameters randomised too, so every tensor
matters), saved as .safetensors and as .pth, converted by `resnet-tl weights
convert`, then both run on the same random 0..255 images at two sizes. Prints
max |logit difference| / max |logit| per case (the bound is 1e-4).

    pip install torch torchvision    # e.g. in a separate venv with --system-site-packages
    python benchmarks/compare_torchvision.py [--sizes 64 224] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OURS = {"resnet18": "resnet18", "resnet34": "resnet34", "resnet50": "resnet50v1.5"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch
    import torchvision
    from safetensors.torch import save_file

    import keras
    from resnet_tl.models.convert import convert

    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, ours in OURS.items():
            net = getattr(torchvision.models, arch)(weights=None).eval()
            with torch.no_grad():
                for m in net.modules():
                    if isinstance(m, torch.nn.BatchNorm2d):
                        m.weight.uniform_(0.5, 1.5); m.bias.normal_(0, 0.1)
                        m.running_mean.normal_(0, 0.1); m.running_var.uniform_(0.5, 1.5)
            state = {k: v.contiguous() for k, v in net.state_dict().items()}
            files = {"safetensors": Path(tmp) / f"{arch}.safetensors", "pth": Path(tmp) / f"{arch}.pth"}
            save_file(state, str(files["safetensors"]))
            torch.save(state, files["pth"])
            for kind, path in files.items():
                for size in args.sizes:
                    out = Path(tmp) / f"{arch}_{kind}_{size}.keras"
                    convert(str(path), out, image_size=size)
                    model = keras.saving.load_model(out, safe_mode=True, compile=False)
                    x = np.random.default_rng(size).integers(0, 256, (4, size, size, 3)).astype(np.float32)
                    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
                    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
                    with torch.no_grad():
                        expected = net((torch.from_numpy(x).permute(0, 3, 1, 2) / 255.0 - mean) / std).numpy()
                    features = keras.Model(model.input, model.get_layer("head_pool").output)(x)
                    got = keras.ops.convert_to_numpy(model.get_layer("head").get_layer("head_logits")(features))
                    ratio = float(np.abs(got - expected).max() / np.abs(expected).max())
                    rows.append({"arch": arch, "backbone": ours, "file": kind, "size": size,
                                 "max_abs_diff": float(np.abs(got - expected).max()),
                                 "max_abs_logit": float(np.abs(expected).max()), "ratio": ratio,
                                 "top1_agree": bool((got.argmax(1) == expected.argmax(1)).all())})
                    keras.backend.clear_session()
    doc = {"torch": torch.__version__, "torchvision": torchvision.__version__, "keras": keras.__version__,
           "backend": keras.backend.backend(), "rows": rows, "all_within_1e-4": all(r["ratio"] <= 1e-4 for r in rows)}
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print(f"torch {doc['torch']}, torchvision {doc['torchvision']}, keras {doc['keras']} ({doc['backend']})")
    print("| arch | file | px | max abs diff | max abs logit | ratio | top-1 agree |\n| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['arch']} | {r['file']} | {r['size']} | {r['max_abs_diff']:.2e} | {r['max_abs_logit']:.3g} | "
              f"{r['ratio']:.1e} | {r['top1_agree']} |")


if __name__ == "__main__":
    main()
