"""Compiled programs kept across runs: a second train, evaluate or predict of the same shapes
loads them instead of compiling again (a ResNet-50 step takes seconds to compile, a step to run
takes milliseconds).

- JAX: its persistent compilation cache in ``<cache folder>/jax``, bounded by JAX itself
  (``jax_compilation_cache_max_size``: least recently used entries go first).
- TensorFlow: XLA's persistent cache (``--tf_xla_persistent_cache_directory`` in
  ``TF_XLA_FLAGS``) in ``<cache folder>/tf-xla``. It holds only functions compiled with
  XLA (resnet-tl's default on GPUs, not on CPUs) and has no bound of its own, so the
  oldest files are removed here, at start-up, when the folder grows past the bound.

``RESNET_TL_COMPILE_CACHE_MB`` sets the bound (default 2048); 0 turns both caches off.
A cache the user configured (``JAX_COMPILATION_CACHE_DIR``, the flag already in
``TF_XLA_FLAGS``) is left as it is. `resnet_tl.kerasenv` calls `before_keras_import`
and `after_keras_import`; nothing here imports JAX or TensorFlow unless Keras runs on it.
"""

from __future__ import annotations

import os
from pathlib import Path

from resnet_tl.cachedir import default_cache_dir

DEFAULT_MB = 2048
ENV = "RESNET_TL_COMPILE_CACHE_MB"
# Programs that compile faster than this are not written: reading a file costs about as much,
# and the folder would fill with the many tiny programs Keras compiles.
MIN_COMPILE_S = 0.2
TF_FLAG = "--tf_xla_persistent_cache_directory"


def bound_bytes() -> int:
    """The cache's size bound in bytes from RESNET_TL_COMPILE_CACHE_MB; 0: off."""
    raw = os.environ.get(ENV, "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_MB
    except ValueError:
        mb = DEFAULT_MB  # read before any command parses its options: a typo must not stop Keras loading
    return max(0, int(mb * 2**20))


def folder(backend: str) -> Path:
    return default_cache_dir() / ("jax" if backend == "jax" else "tf-xla")


def before_keras_import() -> None:
    """Point TensorFlow's XLA cache at resnet-tl's folder (TF reads TF_XLA_FLAGS at its first XLA compile)."""
    bound = bound_bytes()
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if bound == 0 or TF_FLAG in flags:
        return
    tf_dir = folder("tensorflow")
    prune(tf_dir, bound)
    os.environ["TF_XLA_FLAGS"] = f"{flags} {TF_FLAG}={tf_dir}".strip()


def after_keras_import(backend: str) -> None:
    """Under JAX, turn on its persistent compilation cache (before anything compiles)."""
    bound = bound_bytes()
    if backend != "jax" or bound == 0:
        return
    import jax

    if jax.config.jax_compilation_cache_dir:  # the user's own
        return
    jax.config.update("jax_compilation_cache_dir", str(folder("jax")))
    jax.config.update("jax_compilation_cache_max_size", bound)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def describe(backend: str) -> dict:
    """For `resnet-tl info`: where compiled programs are kept, the bound, and how much is there."""
    bound = bound_bytes()
    if backend not in ("jax", "tensorflow") or bound == 0:
        return {"folder": None, "bound_mb": 0, "used_mb": 0, "note": "off" if bound == 0 else f"none for the {backend} backend"}
    path = folder(backend)
    if backend == "jax":
        import jax

        path = Path(jax.config.jax_compilation_cache_dir or path)
        note = "JAX persistent compilation cache"
    else:
        flag = next((f for f in os.environ.get("TF_XLA_FLAGS", "").split() if f.startswith(TF_FLAG + "=")), None)
        path = Path(flag.split("=", 1)[1]) if flag else path
        note = "XLA persistent cache: functions compiled with jit_compile only"
    return {"folder": str(path), "bound_mb": round(bound / 2**20), "used_mb": round(_size(path) / 2**20, 1), "note": note}


def prune(path: Path, bound: int) -> None:
    """Remove the least recently written files under `path` until it holds at most 80% of `bound` bytes."""
    files = []
    for f in path.rglob("*") if path.is_dir() else ():
        try:
            st = f.stat()
        except OSError:
            continue
        if f.is_file():
            files.append((st.st_mtime, st.st_size, f))
    total = sum(size for _, size, _ in files)
    if total <= bound:
        return
    for _, size, f in sorted(files):
        if total <= 0.8 * bound:
            break
        try:
            f.unlink()
            total -= size
        except OSError:
            pass


def _size(path: Path) -> int:
    total = 0
    for f in path.rglob("*") if path.is_dir() else ():
        try:
            total += f.stat().st_size if f.is_file() else 0
        except OSError:
            pass
    return total
