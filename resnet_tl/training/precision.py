"""Precision, XLA, devices and distribution for the current Keras backend.

`configure(train_cfg)` resolves ``auto`` values against the hardware, sets
the global Keras dtype policy (and, under JAX, the global distribution) and
returns a `Setup` the trainer uses.

Loss scaling: Keras wraps the optimizer in a ``LossScaleOptimizer`` when a
model whose dtype policy is ``mixed_float16`` is compiled, on every backend;
the trainer builds its models after `configure`, so nothing else is needed.
``mixed_bfloat16`` has float32's range and needs no loss scaling.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

from resnet_tl import compile_cache
from resnet_tl.cpus import usable_cpus
from resnet_tl.cachedir import default_cache_dir
from resnet_tl.data.prefetch import loader_workers
from resnet_tl.kerasenv import keras_module
from resnet_tl.sysinfo import cpu_features, cpu_flags, cpu_model, fast_mixed_precision, package_versions
from resnet_tl.recipe import TrainConfig
from resnet_tl.training import distribute

keras = keras_module()


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
    distribute: str = "none"  # none | mirrored | multi-worker (resolved)
    num_replicas: int = 1  # devices that share each global batch, all processes together
    process_id: int = 0
    num_processes: int = 1

    @property
    def is_chief(self) -> bool:
        """Only process 0 writes the run folder."""
        return self.process_id == 0

    def process_batch_size(self, global_batch: int) -> int:
        """Samples this process reads per step: the global batch over the processes."""
        return global_batch // self.num_processes

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


@dataclass(frozen=True)
class PrecisionRule:
    """One row of PRECISION_RULES: when `applies` to the devices, `auto` means `precision`, for `why`."""

    name: str
    applies: Callable[[list[Device]], bool]
    precision: str
    why: str


def _gpus_at_least(devices: list[Device], cc: tuple[int, int]) -> bool:
    gpus = [d for d in devices if d.kind == "gpu"]
    return bool(gpus) and all(d.compute_capability and tuple(d.compute_capability) >= cc for d in gpus)


# What `precision: auto` picks: the first rule that applies. Every GPU must qualify (one replica
# per GPU runs the same policy). bfloat16 on Ampere and later: tensor cores run it at float16's
# rate, and float32's exponent range needs no loss scaling (a float16 step has to check every
# gradient for inf/nan and may skip steps); benchmarks/gpu/bench_gpu.py measures both.
PRECISION_RULES = (
    PrecisionRule("gpu-cc8", lambda ds: _gpus_at_least(ds, (8, 0)), "mixed_bfloat16",
                  "NVIDIA GPUs of compute capability >= 8.0 run bfloat16 on tensor cores as fast as float16, "
                  "with float32's range: no loss scaling"),
    PrecisionRule("gpu-cc7", lambda ds: _gpus_at_least(ds, (7, 0)), "mixed_float16",
                  "compute capability 7.x tensor cores run float16, not bfloat16; Keras adds loss scaling"),
    PrecisionRule("tpu", lambda ds: any(d.kind == "tpu" for d in ds), "mixed_bfloat16", "TPUs compute in bfloat16"),
    PrecisionRule("default", lambda ds: True, "float32",
                  "no GPU with tensor cores (every GPU must have them) and no TPU: mixed precision would not be faster"),
)


def precision_rule(devices: list[Device]) -> PrecisionRule:
    """The PRECISION_RULES row that decides `auto` for these devices."""
    return next(r for r in PRECISION_RULES if r.applies(devices))


def resolve_precision(requested: str, devices: list[Device]) -> str:
    """`requested`, or for auto the precision of the first PRECISION_RULES row that applies."""
    if requested != "auto":
        return requested
    return precision_rule(devices).precision


def resolve_jit(requested, backend: str, devices: list[Device]) -> bool:
    """auto: on for accelerators, and always under JAX, whose trainer otherwise
    runs every op eagerly (20x slower on a CPU); off for TensorFlow on CPUs."""
    if requested != "auto":
        return bool(requested)
    return backend == "jax" or any(d.kind != "cpu" for d in devices)


def configure(cfg: TrainConfig, cluster=None) -> Setup:
    """Set the global dtype policy for `cfg.precision`, resolve jit_compile and
    set up `cfg.distribute`.

    cluster: a `resnet_tl.training.distribute.Cluster` for multi-worker runs; default:
    the one named by the RESNET_TL_* environment variables, if any.
    """

    backend = keras.backend.backend()
    if cluster is None:
        cluster = distribute.cluster_from()
    if cluster is not None and cfg.distribute in ("auto", "multi-worker") and backend == "jax":
        distribute.start_cluster(cluster)  # before the first device query
    devices = list_devices(backend)
    n_acc = sum(d.kind != "cpu" for d in devices)
    mode = distribute.resolve_distribute(cfg.distribute, backend, n_acc, cluster)
    precision = resolve_precision(cfg.precision, devices)
    keras.mixed_precision.set_dtype_policy(precision)
    jit = resolve_jit(cfg.jit_compile, backend, devices)
    strategy, replicas = distribute.make_strategy(mode, backend)
    distribute.check_batch_size(cfg.batch_size, replicas, cluster.num_processes if mode == "multi-worker" else 1)
    setup = Setup(precision=precision, backend=backend, jit_compile=jit, devices=devices,
                  strategy=strategy, distribute=mode, num_replicas=replicas)
    if mode == "multi-worker":
        setup.process_id, setup.num_processes = cluster.process_id, cluster.num_processes
    return setup


def system_info() -> dict:
    """What this installation runs on, for `resnet-tl info`: versions, backend, devices, the CPU,
    which mixed precision policies the hardware runs fast, XLA, the cache folder. One JSON-ready document."""
    backend = keras.backend.backend()
    devices = list_devices(backend)
    flags = cpu_flags()
    return {
        "versions": package_versions(),
        "backend": backend,
        "devices": [{"kind": d.kind, "name": d.name, "compute_capability": d.compute_capability} for d in devices],
        "precision_auto": resolve_precision("auto", devices),
        "precision_auto_rule": {"name": (rule := precision_rule(devices)).name, "why": rule.why},
        "mixed_precision": fast_mixed_precision(devices, flags),
        "cpu": {"model": cpu_model(), "cpus_usable": loader_workers(), "features": cpu_features(flags)},
        "xla": backend in ("tensorflow", "jax"),
        "jit_compile_auto": resolve_jit("auto", backend, devices),
        "cache_dir": str(default_cache_dir()),
        "compile_cache": compile_cache.describe(backend),
        "usable_cpus": usable_cpus(),
    }
