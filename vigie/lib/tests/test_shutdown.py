from __future__ import annotations

import os
import signal
import threading

from vigie.lib.shutdown import stop_on_signals


def test_it_stops_on_sigterm_and_sigint_and_gives_the_handlers_back() -> None:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    stops: list[str] = []
    with stop_on_signals(lambda: stops.append("stop")):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert stops == ["stop", "stop"]
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_it_ignores_what_it_is_told_to_ignore() -> None:
    before = signal.getsignal(signal.SIGIO)
    with stop_on_signals(lambda: None, ignore=(signal.SIGIO,)):
        assert signal.getsignal(signal.SIGIO) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGIO)  # would end the process by default
    assert signal.getsignal(signal.SIGIO) == before


def test_it_installs_nothing_outside_the_main_thread() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def in_thread() -> None:
        with stop_on_signals(lambda: None):
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [before]
