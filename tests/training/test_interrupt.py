"""Ctrl-C while training: the first one is noted and acted on at a known point, never lost."""

from __future__ import annotations

import gc
import os
import signal
import threading

import pytest

from resnet_tl.training import interrupt


class _Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs inside this finalizer


def test_a_ctrl_c_inside_a_finalizer_is_not_lost():
    # Without the deferral, the KeyboardInterrupt raised in __del__ is printed as "Exception ignored" and dropped.
    with pytest.raises(KeyboardInterrupt):
        with interrupt.deferred():
            _Finalized()
            gc.collect()
            interrupt.check()
            pytest.fail("check() did not raise")


def test_a_ctrl_c_from_another_thread_waits_for_the_next_check_and_a_second_one_raises_at_once():
    with interrupt.deferred():
        t = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT))
        t.start()
        t.join()
        for _ in range(1000):  # the handler runs on the main thread at its next bytecode boundary
            pass
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        interrupt.check()  # once only
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):  # second press: at once, no check needed
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_after_the_last_check_still_stops_the_run():
    with pytest.raises(KeyboardInterrupt):
        with interrupt.deferred():
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_callers_own_handler_is_left_alone():
    seen = []
    previous = signal.signal(signal.SIGINT, lambda s, f: seen.append(s))
    try:
        with interrupt.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            interrupt.check()
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)
