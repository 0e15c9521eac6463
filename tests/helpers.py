"""Small synthetic datasets and recipes shared by the trainer tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resnet_tl.recipe import build_recipe

ROOT = Path(__file__).resolve().parent.parent  # the checkout
TESTS = ROOT / "tests"


def error_lines(text: str) -> list[str]:
    """The `error:` lines of a command's output: a user error must give exactly one."""
    return [line for line in text.splitlines() if line.startswith("error:")]


@dataclass
class ArrayDataset:
    """Stands in for resnet_tl.data.Dataset: uint8 pixels and int labels."""

    classes: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    paths_train: list[str] = field(default_factory=list)
    paths_val: list[str] = field(default_factory=list)
    paths_test: list[str] = field(default_factory=list)
    report: dict | None = None


def bars_dataset(n_per_class: int = 24, size: int = 16, seed: int = 0, n_val_per_class: int = 8) -> ArrayDataset:
    """Two easy classes: a bright vertical bar or a bright horizontal bar on noise."""
    rng = np.random.default_rng(seed)

    def make(n):
        xs, ys = [], []
        for label in (0, 1):
            for _ in range(n):
                img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                k = rng.integers(2, size - 4)
                if label == 0:
                    img[:, k:k + 3] = 230
                else:
                    img[k:k + 3, :] = 230
                xs.append(img)
                ys.append(label)
        order = rng.permutation(len(ys))
        return np.stack(xs)[order], np.array(ys, dtype=np.int32)[order]

    xt, yt = make(n_per_class)
    xv, yv = make(n_val_per_class)
    return ArrayDataset(["horizontal", "vertical"][::-1], xt, yt, xv, yv,
                        paths_train=[f"train/{i}.png" for i in range(len(yt))],
                        paths_val=[f"val/{i}.png" for i in range(len(yv))])


def tiny_recipe(schedule, backbone: str = "resnet8", image_size: int = 16, **sections):
    """A recipe for fast CPU tests: CIFAR ResNet-8 at 16 px, batch 16, no augmentation."""
    raw = {
        "name": "t",
        "data": {"image_size": image_size, "augment": {"flip": "none"}},
        "model": {"backbone": backbone, "weights": "none"},
        "schedule": schedule,
        "train": {"batch_size": 16, "precision": "float32"},
    }
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return build_recipe(raw)


def bars_folder(root, n_per_class: int = 30, size: int = 16, seed: int = 0):
    """The bars task as an image folder: root/hbar/*.png, root/vbar/*.png."""
    from pathlib import Path

    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for label, cls in enumerate(("hbar", "vbar")):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
            k = int(rng.integers(2, size - 4))
            if label:
                img[:, k:k + 3] = 230
            else:
                img[k:k + 3, :] = 230
            Image.fromarray(img).save(root / cls / f"{i:02d}.png")
    return root


def affinity_capped_by_quota() -> int:
    """The CPUs a test expects this process to use: the affinity mask (from the OS) capped by
    the cgroup CPU quota, rounded up, as `resnet_tl.cpus.usable_cpus` promises; under
    `docker --cpus=1` that is 1 whatever the mask says. The quota reader itself is
    tested on fake cgroup trees in tests/core/test_cpus.py."""
    import math
    import os

    from resnet_tl import cpus

    quota = cpus.cgroup_cpu_quota()
    return max(1, min(len(os.sched_getaffinity(0)), math.ceil(quota) if quota is not None else 10**9))
