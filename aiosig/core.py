"""A drop-in for the stdlib's `signal` module: ``import aiosig.core as signal``.

Every public name of the running interpreter's `signal` module is here, the same objects,
so constants, enums, ``struct_siginfo``, ``ItimerError`` and the functions compare and behave
as the stdlib's do. Six functions are replaced by versions that stay coherent with aiosig
while it manages a signal, the wakeup fd or an interval timer (same signatures, results and
errors otherwise): ``signal``, ``getsignal`` and ``set_wakeup_fd`` (logic in
``aiosig._dropin``), and ``alarm``, ``setitimer`` and ``getitimer``, which read and set the
user's own timer while aiosig's timers share the kernel's (logic in ``aiosig._timers``).
"""

import signal as _stdlib
from signal import *  # noqa: F403  (whatever this interpreter's signal module has)

from aiosig._dropin import alarm as alarm
from aiosig._dropin import getitimer as getitimer
from aiosig._dropin import getsignal as getsignal
from aiosig._dropin import set_wakeup_fd as set_wakeup_fd
from aiosig._dropin import setitimer as setitimer
from aiosig._dropin import signal as signal

__all__ = [name for name in dir(_stdlib) if not name.startswith("_")]
