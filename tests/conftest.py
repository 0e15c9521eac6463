"""Shared fixtures: tiny image files of every awkward kind, written on the fly, and one trained
run that every test needing a finished run shares (trained once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from images import write_messy_folder

from resnet_tl.kerasenv import quiet_tensorflow

# no_skips_in_ci: under CI=true a skip is a failure. pytester: to test that plugin.
pytest_plugins = ["no_skips_in_ci", "pytester"]

quiet_tensorflow()


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: a worker per CPU this process may use, at most 4 (each holds TensorFlow, ~1-2 GB).

    Most tests spend their time in one thread (Python, tracing, process start-up), so on the
    2-core CI machine two workers keep both cores busy."""
    from resnet_tl.cpus import usable_cpus

    return max(1, min(4, usable_cpus()))


def pytest_collection_modifyitems(config, items):
    """Files that hold slow tests run first (order within a file kept): under `--dist loadfile` a
    worker that starts a long file late holds the whole run up while the others sit idle."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """Class folders cat/, dog/ (every awkward kind of file) and bird/ (no usable image)."""
    return write_messy_folder(tmp_path / "messy")


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory) -> Path:
    """The bars task as a folder with train/ val/ test/ (hbar, vbar; 16 px PNGs)."""
    from helpers import bars_folder

    root = tmp_path_factory.mktemp("shared") / "bars"
    for split, n, seed in (("train", 40, 0), ("val", 16, 1), ("test", 12, 2)):
        bars_folder(root / split, n_per_class=n, seed=seed)
    return root


@pytest.fixture(scope="session")
def shared_run(shared_data, tmp_path_factory) -> Path:
    """A finished run on `shared_data`: CIFAR ResNet-8 at 16 px, a head phase then everything.

    Read-only for the tests that use it: copy it (shutil.copytree) before writing into it.
    """
    from helpers import tiny_recipe

    from resnet_tl.training.train import train

    base = tmp_path_factory.mktemp("shared_run")
    recipe = tiny_recipe(
        [{"name": "head", "epochs": 1, "train": "head", "lr": 1e-2},
         {"name": "all", "epochs": 4, "train": "all", "lr": 3e-3, "batchnorm": "train"}],
        data={"dir": str(shared_data), "cache_dir": str(base / "cache")},
    )
    return train(recipe, out=base / "runs", name="run").run_dir
