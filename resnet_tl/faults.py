"""Fault injection for the interruption tests: signal this process at a named point.

``RESNET_TL_FAULT="checkpoint:3"`` sends SIGKILL halfway through writing the
3rd checkpoint; ``"batch:5:INT"`` sends SIGINT after the 5th training batch.
Points: ``batch`` (after a training batch), ``epoch`` (after an epoch's
checkpoint and history are written), ``checkpoint`` (between the two halves
of a checkpoint write). Unset, every call is a dictionary lookup and nothing
else; the variable exists so tests can kill real training processes at
exact places rather than after guessed delays.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get("RESNET_TL_FAULT")
    if not spec:
        return
    where, count, *sig = spec.split(":")
    if where != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] == int(count):
        # raise_signal targets this thread (os.kill lets the kernel pick any thread that doesn't block it),
        # so the handler runs here, at the named point.
        signal.raise_signal(getattr(signal, "SIG" + (sig[0] if sig else "KILL")))
