"""Say bye on SIGTERM: ``bye_on_signals(*topics)``.

``docker stop``, ``systemctl stop`` and ``kill`` send SIGTERM, whose default
action ends the process at once: no ``finally``, no ``atexit``, no bye, so
other peers keep showing its machines connected until ``peer_ttl`` passes.
:func:`bye_on_signals` installs a handler that disposes the topics, waits
(bounded) until they are disposed (their last updates and bye sent), then
restores the previous handlers and hands the signal to the previous one:
the process ends as it would have, only later.

Theory of operation. A Python signal handler runs in the main thread between
two bytecodes, wherever that thread was: in sync code, in asyncio's or
trio's event loop. It must not block there (the interrupted code may hold a
lock the bye needs, or be the trio run the topic lives on), so it only puts
the signal number on a ``queue.SimpleQueue`` (safe in signal handlers) and
returns. A helper thread, started with the handler, disposes the topics and
waits; then it sends the same signal to the main thread
(``signal.pthread_kill``, which also wakes a blocked ``read`` or ``wait``).
The handler, called again, restores the previous handlers and delivers the
signal to the previous one: ``SIG_DFL`` is raised again (the default action
ends the process), a Python handler is called with the frame (SIGINT's
default raises ``KeyboardInterrupt``), ``SIG_IGN`` does nothing. A second
signal while the bye is on its way is delivered at once (press Ctrl-C twice
not to wait).

This works the same for sync code, asyncio and trio, with topics on the
shared runtime or on the caller's trio run, because nothing of it runs on
the loop. Limits: call it from the main thread (Python's rule for signal
handlers); POSIX only for the wake-up (elsewhere the handler is still called
once the main thread runs Python code); and a signal also registered with
asyncio's ``loop.add_signal_handler`` runs that callback too, at once (asyncio
reads its own wake-up fd); the bye still goes out, through the exit wait of
the shared runtime.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Iterable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .topic import Topic

log = logging.getLogger("ampubsub.signals")

#: the signals :func:`bye_on_signals` handles unless told otherwise
DEFAULT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
#: how long the bye may take before the signal is delivered anyway
DEFAULT_TIMEOUT = 3.0

Handler = Any  # a callable, signal.SIG_DFL, signal.SIG_IGN or None


class SignalBye:
    """Installed signal handlers that say bye first; restore with ``close()``.

    Made by :func:`bye_on_signals`; a context manager (leaving the block
    restores the previous handlers).
    """

    def __init__(
        self, topics: Iterable[Topic], signals: Iterable[int], timeout: float
    ) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise ValueError(
                "bye_on_signals must be called from the main thread "
                "(Python runs signal handlers there)"
            )
        self.topics = list(topics)
        self.timeout = timeout
        self.signals = [signal.Signals(s) for s in signals]
        #: the signal that started the bye (None while none came)
        self.received: signal.Signals | None = None
        self._main = threading.main_thread().ident or 0
        self._requests: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._previous: dict[int, Handler] = {}
        for signum in self.signals:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)
        self._helper = threading.Thread(
            target=self._say_bye, name="ampubsub-signal-bye", daemon=True
        )
        self._helper.start()

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.signals)
        return f"<SignalBye {names} topics={len(self.topics)}>"

    def __enter__(self) -> SignalBye:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Restore the previous handlers (where ours are still installed)."""
        if threading.current_thread() is threading.main_thread():
            self._restore()
        if self.received is None:
            self._requests.put(0)  # the helper ends

    # -- in the main thread, between two bytecodes ----------------------------

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)
            self._requests.put(signum)  # SimpleQueue.put is reentrant
            return
        # the bye is done (the helper woke us), or a second signal: deliver
        self._restore()
        self._deliver(signum, frame)

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, signal.SIG_DFL if previous is None else previous)

    def _deliver(self, signum: int, frame: FrameType | None) -> None:
        previous = self._previous.get(signum, signal.SIG_DFL)
        if previous is None or previous == signal.SIG_DFL:
            signal.raise_signal(signum)  # the default action (ends the process)
        elif previous != signal.SIG_IGN and callable(previous):
            previous(signum, frame)

    # -- the helper thread ----------------------------------------------------

    def _say_bye(self) -> None:
        signum = self._requests.get()
        if not signum:
            return  # closed before any signal
        log.info("%s: saying bye before handling it", signal.Signals(signum).name)
        deadline = time.monotonic() + self.timeout
        waiters = []
        for topic in self.topics:
            try:
                waiters.append(topic.dispose())
            except Exception:
                log.exception("disposing %r on a signal failed", topic)
        for waiter in waiters:
            if not waiter.wait(max(0.0, deadline - time.monotonic())):
                log.warning("the bye took longer than %gs", self.timeout)
                break
        self._wake_main(signum)

    def _wake_main(self, signum: int) -> None:
        pthread_kill = getattr(signal, "pthread_kill", None)
        if pthread_kill is not None:
            with contextlib.suppress(ProcessLookupError, OSError):
                pthread_kill(self._main, signum)  # interrupts a blocked call
                return
        import _thread

        _thread.interrupt_main(signal.Signals(signum))


def bye_on_signals(
    *topics: Topic,
    signals: Iterable[int] = DEFAULT_SIGNALS,
    timeout: float = DEFAULT_TIMEOUT,
) -> SignalBye:
    """On any of ``signals``, dispose ``topics`` (bye), then handle it as before.

    Installs a handler for each signal (default SIGTERM and SIGINT) and
    returns at once. On the first signal the topics are disposed and, once
    they are (or after ``timeout`` seconds), the previous handlers are back
    and the signal goes to the previous one: SIGTERM's default ends the
    process, SIGINT's raises ``KeyboardInterrupt``. A second signal meanwhile
    is handed on at once. Use it as a context manager, or call ``close()``,
    to restore the previous handlers without a signal. Works with sync code,
    asyncio and trio; call it from the main thread::

        with bye_on_signals(topic):
            serve_forever()
    """
    return SignalBye(topics, signals, timeout)
