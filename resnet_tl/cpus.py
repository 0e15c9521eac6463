"""How many CPUs this process may use, for every thread pool and runtime we size.

`os.cpu_count()` counts the machine's CPUs. A process pinned with taskset or
started in a container with a CPU quota may use fewer, and sizing threads by
the machine then oversubscribes the few it has. This module imports nothing
of resnet_tl, so any module may ask it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def usable_cpus(cgroup_root: str | Path = "/sys/fs/cgroup", self_cgroup: str | Path = "/proc/self/cgroup") -> int:
    """CPUs this process may run on: its affinity mask, capped by its cgroup's
    CPU quota (rounded up, as the JVM does); at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, self_cgroup)
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


def cgroup_cpu_quota(cgroup_root: str | Path = "/sys/fs/cgroup", self_cgroup: str | Path = "/proc/self/cgroup") -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup and its
    ancestors: cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us / cpu.cfs_period_us`.
    None when there is none (or no cgroup file system)."""
    root = Path(cgroup_root)
    try:
        lines = Path(self_cgroup).read_text().splitlines()
    except OSError:
        lines = []
    limits = []
    for line in lines:
        _, controllers, rel = (line.split(":", 2) + ["", ""])[:3]
        names = controllers.split(",")
        if controllers == "":  # v2: one unified hierarchy
            bases = [root]
        elif "cpu" in names:  # v1: the cpu controller's own hierarchy
            bases = [root / controllers, root / "cpu"]
        else:
            continue
        for base in bases:
            for folder in _ancestors(base, rel):
                limits.append(_quota_in(folder))
    if not lines:
        limits.append(_quota_in(root))
    limits = [q for q in limits if q is not None]
    return min(limits) if limits else None


def _ancestors(base: Path, rel: str) -> list[Path]:
    # Inside a container the recorded path may not exist under the mounted
    # root (it is the host's); the mount root itself then holds the limit.
    parts = [p for p in rel.strip().strip("/").split("/") if p]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _quota_in(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None
