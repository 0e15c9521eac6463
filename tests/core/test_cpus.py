"""usable_cpus: the affinity mask and the cgroup CPU quota, not the machine's count."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import resnet_tl
from resnet_tl.cpus import cgroup_cpu_quota, usable_cpus


def _cgroup(tmp_path: Path, self_line: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    self_cgroup = tmp_path / "self_cgroup"
    self_cgroup.write_text(self_line + "\n")
    return root, self_cgroup


def test_cgroup_v2_quota_of_the_process_and_its_ancestors(tmp_path):
    root, me = _cgroup(tmp_path, "0::/jobs/a", {"cpu.max": "max 100000\n", "jobs/cpu.max": "150000 100000\n", "jobs/a/cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(root, me) == pytest.approx(1.5)
    assert usable_cpus(root, me) == min(len(os.sched_getaffinity(0)), 2)
    root, me = _cgroup(tmp_path / "b", "0::/", {"cpu.max": "50000 100000\n"})
    assert usable_cpus(root, me) == 1  # half a CPU still runs one thread
    root, me = _cgroup(tmp_path / "c", "0::/", {"cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(root, me) is None


def test_cgroup_v1_quota(tmp_path):
    root, me = _cgroup(tmp_path, "4:cpu,cpuacct:/docker/x", {
        "cpu,cpuacct/docker/x/cpu.cfs_quota_us": "100000\n", "cpu,cpuacct/docker/x/cpu.cfs_period_us": "100000\n"})
    assert usable_cpus(root, me) == 1
    root, me = _cgroup(tmp_path / "b", "4:cpu,cpuacct:/", {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_quota(root, me) is None


def test_a_pinned_process_counts_only_its_cpus():
    """The kernel's own affinity mask: a child pinned to one CPU sees 1, whatever os.cpu_count() says."""
    code = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); from resnet_tl.cpus import usable_cpus; print(usable_cpus(), os.cpu_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "1" and int(out[1]) >= 1


def test_no_module_sizes_threads_by_the_machine():
    package = Path(resnet_tl.__file__).parent
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if p.name != "cpus.py" and re.search(r"os\.cpu_count\(", p.read_text())]
    assert offenders == []
