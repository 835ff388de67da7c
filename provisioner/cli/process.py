"""How the `provision` process ends: its output flushed, then at once, without freeing what it built.

The console script runs ``run``; tests and ``main.main()`` callers get click's
usual behaviour. Whatever needs the interpreter's own shutdown (a thread still
running, an exit status that is not a number, output that cannot be flushed)
gets it.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

from provisioner.cli.group import main
from provisioner.retain import keep_until_exit


def run() -> None:
    """The `provision` command as the console script runs it."""
    keep_until_exit()
    status: str | int | None = 0
    try:
        main()
    except SystemExit as exit:
        status = exit.code
    if not isinstance(status, int) or _threads_running():
        sys.exit(status)  # None is 0; a text is printed, and is 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe, say: the interpreter reports it as it always did
        sys.exit(status)
    atexit._run_exitfuncs()  # logging's shutdown and whatever a library registered
    os._exit(status)


def _threads_running() -> bool:
    """A thread that is not a daemon is one the interpreter would wait for."""
    return any(
        thread.is_alive() and not thread.daemon
        for thread in threading.enumerate()
        if thread is not threading.main_thread()
    )
