"""Clean shutdown on SIGTERM/SIGINT: the signal becomes a flag the training loop polls,
so it saves a checkpoint and leaves instead of dying mid-step."""

import os
import signal
import threading
from typing import Any, Iterable, Optional


class GracefulExit:
    """Turn SIGTERM/SIGINT into a flag that the training loop polls, so it can save a
    checkpoint and leave cleanly instead of dying mid-step::

        with GracefulExit() as stop:
            for step in range(start, total):
                train_step()
                if stop.requested:
                    save_checkpoint(...)
                    break

    A second signal of the same kind while a stop is pending gets the previous
    behaviour (for Ctrl-C: ``KeyboardInterrupt``; for a default SIGTERM: termination),
    so a stuck run can still be killed. The previous handlers come back on exit.
    Blocks nest: an inner block starts with the outer one's pending stop and passes
    its own up, so a program can keep signals handled from start to end while its
    training loop polls its own flag.
    Handlers can only be installed from the main thread (RuntimeError otherwise).
    """

    def __init__(self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.signals = tuple(signals)
        if not self.signals:
            raise ValueError("signals: expected at least one signal")
        self.requested = False
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}

    @property
    def signal_name(self) -> Optional[str]:
        """Name of the signal that requested the stop (``"SIGTERM"``), or None."""
        return None if self.signum is None else signal.Signals(self.signum).name

    def request(self, signum: Optional[int] = None) -> None:
        """Set the flag by hand (e.g. when another rank received the signal)."""
        self.requested = True
        if signum is not None:
            self.signum = signum
        for parent in self._parents():
            if not parent.requested:
                parent.request(signum)

    def _parents(self) -> list["GracefulExit"]:
        """Enclosing :class:`GracefulExit` blocks whose handlers this one replaced."""
        found = []
        for previous in self._previous.values():
            owner = getattr(previous, "__self__", None)
            if isinstance(owner, GracefulExit) and owner is not self and owner not in found:
                found.append(owner)
        return found

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.requested:
            self.request(signum)
            return
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # SIG_DFL (or unknown): do what it would have done
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def __enter__(self) -> "GracefulExit":
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("GracefulExit: signal handlers can only be installed from "
                               "the main thread")
        for sig in self.signals:
            self._previous[sig] = signal.getsignal(sig)
        for sig in self.signals:
            signal.signal(sig, self._handle)
        # Nested in another GracefulExit (e.g. the whole program's): a stop it already
        # received carries over, and a stop received here is passed back up to it.
        for parent in self._parents():
            if parent.requested and not self.requested:
                self.requested, self.signum = True, parent.signum
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}


__all__ = ["GracefulExit"]
