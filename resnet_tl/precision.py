"""Precision, XLA and device discovery for the current Keras backend.

`configure(train_cfg)` resolves ``auto`` values against the hardware, sets
the global Keras dtype policy and returns a `Setup` the trainer uses.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from resnet_tl.recipe import TrainConfig


@dataclass(frozen=True)
class Device:
    kind: str  # "gpu" | "cpu" | "tpu"
    name: str
    compute_capability: tuple[int, int] | None = None


@dataclass
class Setup:
    precision: str
    backend: str
    jit_compile: bool
    devices: list[Device] = field(default_factory=list)
    strategy: object | None = None  # tf.distribute strategy under TF, else None

    def scope(self):
        """Context in which variables are created (a distribution scope or nothing)."""
        if self.strategy is not None:
            return self.strategy.scope()
        return contextlib.nullcontext()


def list_devices(backend: str) -> list[Device]:
    """Accelerators visible to `backend`; [Device('cpu')] when there are none."""
    found: list[Device] = []
    if backend == "tensorflow":
        import tensorflow as tf

        for d in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(d)
            found.append(Device("gpu", details.get("device_name", d.name), details.get("compute_capability")))
    elif backend == "jax":
        import jax

        for d in jax.devices():
            if d.platform == "gpu":
                cc = getattr(d, "compute_capability", None)
                cc = tuple(int(p) for p in str(cc).split(".")) if cc else None
                found.append(Device("gpu", d.device_kind, cc))
            elif d.platform == "tpu":
                found.append(Device("tpu", d.device_kind))
    elif backend == "torch":
        import torch

        for i in range(torch.cuda.device_count()):
            found.append(Device("gpu", torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i)))
    return found or [Device("cpu", "cpu")]


def resolve_precision(requested: str, devices: list[Device]) -> str:
    """auto: mixed_float16 on NVIDIA GPUs of compute capability >= 7.0 (tensor
    cores), mixed_bfloat16 on TPUs, float32 otherwise."""
    if requested != "auto":
        return requested
    gpus = [d for d in devices if d.kind == "gpu"]
    if gpus and all(d.compute_capability and tuple(d.compute_capability) >= (7, 0) for d in gpus):
        return "mixed_float16"
    if any(d.kind == "tpu" for d in devices):
        return "mixed_bfloat16"
    return "float32"


def configure(cfg: TrainConfig) -> Setup:
    """Set the global dtype policy for `cfg.precision`; resolve jit_compile."""
    from resnet_tl.kerasenv import keras_module

    keras = keras_module()

    backend = keras.backend.backend()
    devices = list_devices(backend)
    precision = resolve_precision(cfg.precision, devices)
    keras.mixed_precision.set_dtype_policy(precision)
    accelerated = any(d.kind != "cpu" for d in devices)
    jit = accelerated if cfg.jit_compile == "auto" else bool(cfg.jit_compile)
    return Setup(precision=precision, backend=backend, jit_compile=jit, devices=devices)
