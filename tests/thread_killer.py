"""Test driver: `edged run` in this process, and SIGUSR1 kills one of its threads as a bug would.

    python -m tests.thread_killer REGEX run ARGS…

On SIGUSR1 the first thread whose name matches REGEX gets an exception raised
inside it (CPython's PyThreadState_SetAsyncExc), delivered at its next Python
bytecode; the driver says which on stderr ("test: killed thread NAME"), or
lists the threads when none matches. The exception is not an `Exception`, so
no `except Exception` in edged can swallow it: the thread dies. Test-only code.
"""

from __future__ import annotations

import ctypes
import re
import signal
import sys
import threading

from edged.cli import main


class InjectedFault(BaseException):
    """What the test raises inside a thread of edged."""


def kill_thread(pattern: str) -> None:
    threads = threading.enumerate()
    target = next((t for t in threads if re.fullmatch(pattern, t.name) and t.ident is not None), None)
    if target is None:
        print(f"test: no thread matches {pattern!r}; threads: {', '.join(t.name for t in threads)}",
              file=sys.stderr, flush=True)
        return
    hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target.ident),
                                                     ctypes.py_object(InjectedFault))
    print(f"test: killed thread {target.name}" if hit == 1 else f"test: could not kill {target.name}",
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    pattern, argv = sys.argv[1], sys.argv[2:]
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: kill_thread(pattern))
    sys.exit(main(argv))
