"""How a long-running command (guard daemon, audit watch, MLLP server, hot folder) stops.

SIGTERM (systemd, `kill`) and SIGINT (Ctrl-C) ask it to finish what it is doing and return,
instead of dying mid-write: each daemon passes what "stop" means to it, and checks for it
between units of work.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(
    stop: Callable[[], object], *, ignore: tuple[signal.Signals, ...] = ()
) -> Iterator[None]:
    """Call `stop()` on SIGTERM or SIGINT while inside, and ignore the `ignore` signals.

    The previous handlers come back on exit: a daemon run in-process (tests, call_command)
    gives its caller its Ctrl-C back. Outside the main thread Python cannot install handlers,
    and a thread's caller decides when it stops: nothing is installed there.
    `stop` runs in the main thread between two bytecodes: it must only set a flag or hand
    the request over (an event loop's `call_soon_threadsafe`), never block.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %s: stopping", signal.Signals(signum).name)
        stop()

    previous: dict[signal.Signals, Any] = {}
    try:
        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, on_signal)
        for signum in ignore:
            previous[signum] = signal.signal(signum, signal.SIG_IGN)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
