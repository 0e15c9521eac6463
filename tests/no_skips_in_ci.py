"""pytest plugin: under CI=true a skipped test is a failed test.

A runtime the suite needs (Chromium, JAX, onnxruntime, h5py) that is missing
on the CI machine must fail the build, not vanish into the "skipped" count;
`.ci/run` installs every one of them. Off CI (a laptop without Chromium) skips
stay skips. Expected failures (xfail) are not skips and are left alone.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _as_failure(report, when: str) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true ({when}), which must not happen: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        _as_failure(report, report.when)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    # A module-level importorskip skips the whole file at collection.
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped:
        _as_failure(report, "collection")
