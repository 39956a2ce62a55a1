"""Ctrl-C and SIGTERM end a command the same way: an exception unwinds the stack, so every ``finally``
and context manager runs (the run-directory writer removes its temporary directory), and ``main``
prints one line instead of a traceback."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A signal ended the command; ``signum`` says which. A ``KeyboardInterrupt``, so code that
    already treats Ctrl-C specially treats SIGTERM alike."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``Interrupted`` inside; the previous handlers come back on exit.

    Python runs the handler only between bytecodes, so a command stuck in a long native call (a
    collective waiting for its peers) does not see the first signal until the call returns; a
    second signal then ends the process at once, as it would have without this handler."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    raised = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal raised
        if raised:  # asked twice: stop now, with the signal's own exit status
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raised = True
        raise Interrupted(signum)

    # a signal the parent ignores stays ignored (nohup, background jobs of a non-interactive shell)
    previous = {s: signal.getsignal(s) for s in HANDLED if signal.getsignal(s) is not signal.SIG_IGN}
    for s in previous:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
