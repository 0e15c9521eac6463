"""Scale-out on the engines Keras already has: one machine with several
devices, or several machines.

``train.distribute``:

* ``none``: one device.
* ``mirrored``: every local accelerator holds a copy of the model and takes a
  slice of each batch; ``tf.distribute.MirroredStrategy`` under TensorFlow,
  ``keras.distribution.DataParallel`` under JAX.
* ``multi-worker``: several processes (usually one per machine) on JAX's
  distributed runtime, through ``keras.distribution.initialize``. Needs
  ``KERAS_BACKEND=jax``: Keras 3 with TensorFlow's MultiWorkerMirroredStrategy
  fails inside ``model.fit`` (keras-team/keras#20585).
* ``auto``: multi-worker when a cluster of more than one process is given,
  mirrored when there is more than one accelerator, else none.

``train.batch_size`` is the global batch: each process reads
batch_size / processes samples of its own shard per step, and each device
computes on batch_size / devices of them. The learning rate is never scaled
automatically (see docs/scaleout.md for the linear scaling rule).

A cluster comes from flags (``--coordinator``, ``--num-processes``,
``--process-id``) or the environment (``RESNET_TL_COORDINATOR``,
``RESNET_TL_NUM_PROCESSES``, ``RESNET_TL_PROCESS_ID``). Process 0 is the chief:
the only one that writes the run folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from resnet_tl.errors import UserError
from resnet_tl.kerasenv import keras_module

keras = keras_module()

ENV_COORDINATOR = "RESNET_TL_COORDINATOR"
ENV_NUM_PROCESSES = "RESNET_TL_NUM_PROCESSES"
ENV_PROCESS_ID = "RESNET_TL_PROCESS_ID"


@dataclass(frozen=True)
class Cluster:
    """Where the processes of a multi-worker run meet, and which one this is."""
    coordinator: str  # HOST:PORT of process 0
    num_processes: int
    process_id: int


def _int(value, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{what}: received {value!r}; allowed: an integer") from None


def cluster_from(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Cluster | None:
    """The cluster named by flags, else by RESNET_TL_* variables; None when neither names one.

    Flags win over the environment key by key.
    """
    env = os.environ if env is None else env
    coordinator = coordinator or env.get(ENV_COORDINATOR) or None
    if num_processes is None and env.get(ENV_NUM_PROCESSES):
        num_processes = _int(env[ENV_NUM_PROCESSES], ENV_NUM_PROCESSES)
    if process_id is None and env.get(ENV_PROCESS_ID):
        process_id = _int(env[ENV_PROCESS_ID], ENV_PROCESS_ID)
    if coordinator is None and num_processes is None and process_id is None:
        return None
    missing = [name for name, v in (("--coordinator", coordinator), ("--num-processes", num_processes), ("--process-id", process_id)) if v is None]
    if missing:
        raise UserError(f"multi-worker: {', '.join(missing)} not given; a cluster needs --coordinator HOST:PORT, --num-processes N and --process-id I (or {ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID})")
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--coordinator: received {coordinator!r}; allowed: HOST:PORT of process 0, e.g. 10.0.0.1:1234")
    if num_processes < 1:
        raise UserError(f"--num-processes: received {num_processes}; allowed: 1 or more")
    if not 0 <= process_id < num_processes:
        raise UserError(f"--process-id: received {process_id}; allowed: 0..{num_processes - 1}")
    return Cluster(coordinator, num_processes, process_id)


def resolve_distribute(requested: str, backend: str, n_accelerators: int, cluster: Cluster | None) -> str:
    """auto -> multi-worker / mirrored / none; refuse what the backend cannot do."""
    mode = requested
    if mode == "auto":
        if cluster is not None and cluster.num_processes > 1:
            mode = "multi-worker"
        elif n_accelerators > 1:
            mode = "mirrored"
        else:
            mode = "none"
    if mode == "multi-worker":
        if backend != "jax":
            raise UserError(
                f"train.distribute: multi-worker needs KERAS_BACKEND=jax (received backend {backend!r}); "
                "Keras 3 with TensorFlow's MultiWorkerMirroredStrategy fails inside model.fit (keras-team/keras#20585)"
            )
        if cluster is None:
            raise UserError(f"train.distribute: multi-worker needs --coordinator, --num-processes and --process-id (or {ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID})")
    elif cluster is not None and cluster.num_processes > 1:
        raise UserError(f"train.distribute: received {requested!r} with a cluster of {cluster.num_processes} processes; allowed: auto or multi-worker")
    if mode == "mirrored" and backend not in ("tensorflow", "jax"):
        raise UserError(f"train.distribute: mirrored needs KERAS_BACKEND tensorflow or jax; received {backend!r}")
    return mode


def start_cluster(cluster: Cluster) -> None:
    """Join JAX's distributed runtime. Must run before JAX touches a device."""
    import jax


    if "jax_cpu_collectives_implementation" in jax.config.values:
        # CPU-only processes need a collectives library to all-reduce gradients.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize(cluster.coordinator, cluster.num_processes, cluster.process_id)


def make_strategy(mode: str, backend: str):
    """Set up `mode` for `backend`; returns (tf strategy or None, number of replicas).

    Under JAX this sets the global Keras distribution (DataParallel over every
    device of every process); under TensorFlow it returns a MirroredStrategy
    over the GPUs, or over the logical CPUs when there is no GPU.
    """
    if mode == "none":
        if backend == "jax":

            keras.distribution.set_distribution(None)
        return None, 1
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        return strategy, strategy.num_replicas_in_sync

    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    # Each process already reads its own shard (ArrayBatches shard_index/num_shards).
    distribution.auto_shard_dataset = False
    keras.distribution.set_distribution(distribution)
    return None, len(devices)


def check_batch_size(batch_size: int, num_replicas: int, num_processes: int) -> None:
    """The global batch must split evenly across devices (and so across processes)."""
    if batch_size % num_replicas or batch_size % num_processes:
        raise UserError(
            f"train.batch_size: received {batch_size}; with {num_replicas} devices in {num_processes} process(es) "
            f"it must be a multiple of {num_replicas} (it is the global batch, split across devices)"
        )


def to_numpy(value) -> np.ndarray:
    """A variable's value as numpy, also when it spans devices of other processes.

    Under JAX multi-worker data parallelism every variable is replicated, so
    this process's first shard holds the whole value.
    """
    v = getattr(value, "value", value)
    shards = getattr(v, "addressable_shards", None)
    if shards is not None and not getattr(v, "is_fully_addressable", True):
        return np.asarray(shards[0].data)
    return np.asarray(value.numpy() if hasattr(value, "numpy") else v)


def local_copy(model, build):
    """A copy of `model` on this process only, for saving and evaluating after
    multi-worker training: leaves the distribution, builds a fresh model with
    `build()` and copies the (replicated) weights into it."""
    values = [to_numpy(v) for v in model.variables]
    keras.distribution.set_distribution(None)
    fresh = build()
    for v, value in zip(fresh.variables, values):
        v.assign(value)
    return fresh
