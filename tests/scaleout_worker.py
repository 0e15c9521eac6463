"""A tiny training in its own process, for the backend and scale-out tests.

    python tests/scaleout_worker.py OUT NAME DUMP.npz [--logical-cpus N] [--set KEY=VALUE ...]

Trains CIFAR ResNet-20 at 16 px on the bars dataset and writes the final
trained classifier weights (`TrainResult.model`) to DUMP.npz, plus the resolved
setup as DUMP.json. The cluster, if any, comes from RESNET_TL_* variables.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("name")
    ap.add_argument("dump")
    ap.add_argument("--logical-cpus", type=int, default=0)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()

    from resnet_tl.kerasenv import keras_module, quiet_tensorflow

    quiet_tensorflow()
    if args.logical_cpus:
        import tensorflow as tf  # before TensorFlow initialises its devices

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)
    keras_module()

    from helpers import bars_dataset, tiny_recipe

    from resnet_tl.training import train as train_mod
    from resnet_tl.training.distribute import to_numpy
    from resnet_tl.recipe import build_recipe

    base = tiny_recipe([{"name": "all", "epochs": 2, "train": "all", "lr": 3e-3, "batchnorm": "train"}])
    recipe = build_recipe(base.to_dict(), args.set)
    result = train_mod.train(recipe, out=args.out, name=args.name, dataset=bars_dataset())
    np.savez(args.dump, *[to_numpy(v) for v in result.model.variables])
    info = {**result.distribution, "backend": result.backend, "precision": result.precision, "history": result.history}
    Path(args.dump).with_suffix(".json").write_text(json.dumps(info))

if __name__ == "__main__":
    main()
