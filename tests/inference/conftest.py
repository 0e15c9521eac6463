"""Fixtures of the inference tests."""

from __future__ import annotations

import pytest
from sortkit import colour_model


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory):
    """A tiny real model file (see `sortkit.colour_model`), shared read-only."""
    return colour_model(tmp_path_factory.mktemp("colour_model"))
