"""Ctrl-C during training: noted when it arrives, acted on at the next batch or epoch end.

Python raises KeyboardInterrupt wherever the main thread is when the signal
arrives. During `fit` that can be Python code TensorFlow runs from inside a
step (the input generator), where the exception becomes a TensorFlow error or
an early end of data, or a finalizer, where it is printed and dropped; the run
then went on to the end as if nothing had happened (seen on a fresh 2-core
machine in the Ctrl-C tests). So while a run trains, the first SIGINT only
sets a flag and the trainer raises KeyboardInterrupt itself at the next batch
end, epoch end or the end of the run; a second SIGINT raises at once, for a
step that never ends.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_pending = False


def _note(signum, frame) -> None:
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt
    _pending = True


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block, Ctrl-C stops training at the next `check()`; left as it is when a caller
    installed a handler of its own or runs us off the main thread (signal handlers live there)."""
    global _pending
    if not _on_main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    _pending = False
    previous = signal.signal(signal.SIGINT, _note)
    try:
        yield
        check()  # a Ctrl-C after the last check still stops the run
    finally:
        signal.signal(signal.SIGINT, previous)
        _pending = False


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C arrived since the last check (main thread only)."""
    global _pending
    if _pending and _on_main_thread():
        _pending = False
        raise KeyboardInterrupt
