"""The PyTorch peers of the GPU benchmark (issue 23); bench_gpu.py runs each in its own process.

Each subcommand prints one JSON document on stdout:

    python3 torch_peers.py step --arch resnet50 --size 224 --batch 256 --steps 20 --modes train infer [--compile inductor]
    python3 torch_peers.py folder ROOT --arch resnet50 --size 224 --batch 256 --output preds.csv

`step` times a ResNet training step (Adam, cross-entropy, bf16 autocast,
channels_last) and an inference step (bf16, softmax probabilities copied back
to the host) on random uint8 images sent from pinned host memory every step,
as resnet-tl's bench sends its batches. `folder` is the script a PyTorch user
would write to label a folder: ImageFolder + DataLoader(num_workers = every
CPU) + the network in bf16, writing the top-k of every image to a CSV.

The networks are torchvision's. Where torchvision is missing (a CPU dry run
beside the CPU-only torch wheel, which PyPI's torchvision cannot load beside)
the same layouts are built from TORCH_ONLY below, and ImageFolder is replaced
by a plain Dataset reading the folder the same way; the JSON says which ran.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

try:
    import torchvision
except Exception as e:  # noqa: BLE001 - any failure to load it means: use the torch-only layouts
    torchvision, TORCHVISION_ERROR = None, f"{type(e).__name__}: {e}"
else:
    TORCHVISION_ERROR = None

MEAN = torch.tensor([0.485, 0.456, 0.406]) * 255
STD = torch.tensor([0.229, 0.224, 0.225]) * 255
# block, depths: torchvision's table (He et al. 2016, Table 1; Bottleneck = v1.5, the stride on the 3x3).
TORCH_ONLY = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)), "resnet50": ("bottleneck", (3, 4, 6, 3))}


class _Block(nn.Module):
    def __init__(self, kind: str, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * (4 if kind == "bottleneck" else 1)
        if kind == "bottleneck":
            layers = [nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                      nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                      nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        else:
            layers = [nn.Conv2d(cin, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                      nn.Conv2d(width, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())
        self.cout = cout

    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))


def torch_only_resnet(arch: str, classes: int) -> nn.Module:
    kind, depths = TORCH_ONLY[arch]
    layers, cin = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)], 64
    for stage, depth in enumerate(depths):
        for i in range(depth):
            block = _Block(kind, cin, 64 * 2 ** stage, 2 if i == 0 and stage > 0 else 1)
            layers.append(block)
            cin = block.cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


def build(arch: str, classes: int, device) -> nn.Module:
    """Random-weight ResNet `arch` with `classes` outputs, on `device`, channels_last."""
    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)(weights=None, num_classes=classes) if torchvision else torch_only_resnet(arch, classes)
    return net.to(device, memory_format=torch.channels_last)


def to_input(batch_u8: torch.Tensor, device) -> torch.Tensor:
    """(B, H, W, 3) uint8 host -> (B, 3, H, W) float32 normalised on `device`; the permuted view is channels_last."""
    x = batch_u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
    return (x - MEAN.to(device).view(1, 3, 1, 1)) / STD.to(device).view(1, 3, 1, 1)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def host_batches(n: int, batch: int, size: int, classes: int, device):
    """n distinct random batches (uint8 images, int64 labels), pinned when the device is a GPU."""
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        x = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=g)
        y = torch.randint(0, classes, (batch,), generator=g)
        out.append((x.pin_memory(), y.pin_memory()) if device.type == "cuda" else (x, y))
    return out


def time_steps(step, batches, warmup: int, steps: int, device) -> dict:
    """Seconds of the first call (compilation, autotuning), of the warm-up, and images/s over `steps` timed calls."""
    sync(device)
    t0 = time.perf_counter()
    step(*batches[0])
    sync(device)
    first_s = time.perf_counter() - t0
    for i in range(1, warmup):
        step(*batches[i % len(batches)])
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)])
    sync(device)
    seconds = time.perf_counter() - t0
    n = len(batches[0][0])
    return {"images_per_s": round(n * steps / seconds, 2), "step_ms": round(1e3 * seconds / steps, 3),
            "first_call_s": round(first_s, 2), "timed_steps": steps, "warmup_steps": warmup}


def train_step_fn(net, device, amp_dtype):
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step(xb, yb):
        x, y = to_input(xb, device), yb.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype):
            loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def infer_step_fn(net, device, amp_dtype, out: torch.Tensor):
    """Probabilities of each batch copied without a sync into `out` (pinned host), as a predict loop returns them."""
    def step(xb, _yb):
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype):
            probs = torch.softmax(net(to_input(xb, device)).float(), dim=1)
        out.copy_(probs, non_blocking=True)
    return step


def cmd_step(a) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    amp = getattr(torch, a.dtype)
    batches = host_batches(4, a.batch, a.size, a.classes, device)
    doc = {"arch": a.arch, "size": a.size, "batch": a.batch, "dtype": a.dtype, "compile": a.compile, "device": str(device),
           "device_name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "results": {}}
    for mode in a.modes:
        net = build(a.arch, a.classes, device).train(mode == "train").requires_grad_(mode == "train")
        model = torch.compile(net, backend=a.compile) if a.compile != "none" else net
        if mode == "train":
            step = train_step_fn(model, device, amp)
        else:
            out = torch.empty((a.batch, a.classes), pin_memory=device.type == "cuda")
            step = infer_step_fn(model, device, amp, out)
        r = time_steps(step, batches, a.warmup, a.steps, device)
        if mode == "infer":
            r["probabilities_sum_to_1"] = bool(torch.allclose(out.sum(1), torch.ones(a.batch), atol=1e-3))
        doc["results"][mode] = r
    return doc


class _Folder(torch.utils.data.Dataset):
    """ImageFolder's reading without torchvision: sorted class folders, PIL decode to RGB, bilinear resize."""

    EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}

    def __init__(self, root: str, size: int):
        self.classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
        self.samples = [(str(p), i) for i, c in enumerate(self.classes) for p in sorted(Path(root, c).rglob("*")) if p.suffix.lower() in self.EXT]
        self.size = size

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.samples[i][0]) as im:
            img = im.convert("RGB").resize((self.size, self.size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(img).copy()), self.samples[i][1]


def _hwc(t: torch.Tensor) -> torch.Tensor:
    """(3, H, W) -> (H, W, 3): the layout to_input expects (a named function: DataLoader workers pickle it)."""
    return t.permute(1, 2, 0)


def folder_dataset(root: str, size: int):
    """(dataset yielding (H, W, 3) uint8 tensors, its (path, class) samples)."""
    if torchvision is None:
        ds = _Folder(root, size)
        return ds, ds.samples
    from torchvision import transforms as T

    tf = T.Compose([T.Resize((size, size)), T.PILToTensor(), T.Lambda(_hwc)])
    ds = torchvision.datasets.ImageFolder(root, transform=tf)
    return ds, ds.samples


def cmd_folder(a) -> dict:
    t_start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    ds, samples = folder_dataset(a.root, a.size)
    workers = a.workers if a.workers is not None else os.cpu_count()
    loader = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=False, num_workers=workers, pin_memory=device.type == "cuda")
    net = build(a.arch, a.classes, device).eval()
    amp, k, n = getattr(torch, a.dtype), min(a.top_k, a.classes), 0
    with open(a.output, "w", newline="") as f, torch.inference_mode():
        w = csv.writer(f)
        w.writerow(["path"] + [c for i in range(k) for c in (f"label_{i + 1}", f"probability_{i + 1}")])
        for xb, _ in loader:
            with torch.autocast(device.type, dtype=amp):
                probs = torch.softmax(net(to_input(xb, device)).float(), dim=1)
            p, idx = (t.cpu().numpy() for t in probs.topk(k, dim=1))
            for j in range(len(p)):
                w.writerow([samples[n + j][0]] + [c for i in range(k) for c in (f"class{idx[j, i]}", f"{p[j, i]:.5f}")])
            n += len(p)
    return {"images": n, "workers": workers, "batch": a.batch, "arch": a.arch, "dtype": a.dtype, "device": str(device),
            "seconds_in_process": round(time.perf_counter() - t_start, 2), "output": a.output}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("step", "folder"):
        p = sub.add_parser(name)
        p.add_argument("--arch", default="resnet50", choices=sorted(TORCH_ONLY))
        p.add_argument("--size", type=int, default=224)
        p.add_argument("--batch", type=int, default=256)
        p.add_argument("--classes", type=int, default=10)
        p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    s = sub.choices["step"]
    s.add_argument("--steps", type=int, default=20)
    s.add_argument("--warmup", type=int, default=5)
    s.add_argument("--modes", nargs="+", default=["train", "infer"], choices=["train", "infer"])
    s.add_argument("--compile", default="none", help="none (eager) or a torch.compile backend: inductor, aot_eager, ...")
    f = sub.choices["folder"]
    f.add_argument("root")
    f.add_argument("--output", required=True)
    f.add_argument("--top-k", type=int, default=5)
    f.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: every CPU).")
    a = ap.parse_args(argv)
    doc = cmd_step(a) if a.cmd == "step" else cmd_folder(a)
    doc.update(torch=torch.__version__, torchvision=getattr(torchvision, "__version__", None), torchvision_error=TORCHVISION_ERROR,
               cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    json.dump(doc, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
