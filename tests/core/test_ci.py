"""The CI rules themselves: under CI=true nothing skips, and .ci/run installs what the suite needs."""

from __future__ import annotations

import re

import pytest

from helpers import ROOT


SKIPPING = """
import pytest

def test_skips():
    pytest.skip("chromium is not on PATH")

@pytest.mark.skipif(True, reason="jax is not installed")
def test_skipif():
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_xfail():
    assert False

def test_passes():
    pass
"""


@pytest.mark.parametrize("ci", ["true", ""])
def test_skips_fail_under_ci(pytester, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_a=SKIPPING)
    outcomes = pytester.runpytest("-p", "no_skips_in_ci").parseoutcomes()
    # A skip in setup (skipif) reports as an error, one in the test body as a failure.
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) == (2 if ci else 0)
    assert outcomes.get("skipped", 0) == (0 if ci else 2)
    assert outcomes["passed"] == 1 and outcomes["xfailed"] == 1

    # A module-level importorskip skips a whole file at collection.
    pytester.makepyfile(test_a="import pytest\npytest.importorskip('no_such_module_here')\n")
    result = pytester.runpytest("-p", "no_skips_in_ci")
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", outcomes.get("error", 0)) == (1 if ci else 0)
    assert outcomes.get("skipped", 0) == (0 if ci else 1)
    if ci:
        result.stdout.fnmatch_lines(["*skipped under CI=true (collection)*no_such_module_here*"])


def test_ci_run_installs_every_runtime_and_fails_loudly():
    script = (ROOT / ".ci" / "run").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    test_extra = re.search(r"^test = \[(.*)\]$", pyproject, re.M).group(1)
    for runtime in ("jax", "onnxruntime", "tf2onnx", "onnx", "h5py", "pytest"):
        assert f'"{runtime}' in test_extra, runtime
    assert "chromium-browser" in script and "chromium" in script  # Ubuntu and Debian names
    assert "|| echo" not in script  # a failed install stops CI
    assert "CI=true" in script or "export CI" in script
