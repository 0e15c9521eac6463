"""Facts about this machine and installation that need no Keras: package versions, the CPU's
model and matrix extensions (AMX, AVX512_BF16), which mixed precision policies the hardware
runs fast. `resnet_tl.training.precision.system_info` adds the devices for `resnet-tl info`."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from resnet_tl import __version__

PACKAGES = ("resnet-tl", "keras", "tensorflow", "jax", "jaxlib", "numpy")


def package_versions() -> dict[str, str | None]:
    """Installed versions (None when absent), read without importing the packages."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out["resnet-tl"] is None:  # a checkout run with PYTHONPATH
        out["resnet-tl"] = __version__
    return out


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


# CPU matrix extensions that decide how fast bfloat16 and int8 run: AMX tiles
# (Sapphire Rapids and later) multiply bf16/int8 matrices in dedicated units;
# AVX512_BF16 only adds bf16 dot products to the vector units.
CPU_FEATURES = ("amx_tile", "amx_bf16", "amx_int8", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx512f")


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def cpu_features(flags: set[str]) -> dict[str, bool]:
    """Presence of each of CPU_FEATURES in /proc/cpuinfo's flags."""
    return {name: name in flags for name in CPU_FEATURES}


def fast_mixed_precision(devices, flags: set[str]) -> list[str]:
    """Policies with hardware support: float16 on tensor-core GPUs (>= 7.0),
    bfloat16 on GPUs >= 8.0, TPUs and CPUs with AVX512_BF16 or AMX."""
    gpus = [d for d in devices if d.kind == "gpu"]
    caps = [tuple(d.compute_capability or (0, 0)) for d in gpus]
    out = []
    if gpus and all(c >= (7, 0) for c in caps):
        out.append("mixed_float16")
    if (gpus and all(c >= (8, 0) for c in caps)) or any(d.kind == "tpu" for d in devices) or (
        not gpus and flags & {"avx512_bf16", "amx_bf16"}
    ):
        out.append("mixed_bfloat16")
    return out
