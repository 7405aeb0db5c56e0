"""aiosig's atexit hooks, registered when aiosig is imported, in the order they must run.

Theory of operation
-------------------
Rule 1 (registered at import, in a fixed order). atexit runs its hooks last-registered-first.
Two of aiosig's must run after every hook of the application that imports aiosig, so they are
registered here, when ``import aiosig`` runs, not when the modules that own them are first
loaded (``aiosig/__init__.py`` loads those on first use, so that importing aiosig stays
cheap): the exit status's (`_ending.apply`: the process ends as the signal that stopped the
service would end it) and, after it when it has nothing to apply, the hub's (`_hub.at_exit`:
loops that will never run again end their subscriptions, so that a buffered delivery still
takes its default action). Neither touches signal state: this is DESIGN.md's one accepted
exception to "nothing happens at import".

Rule 2 (cheap, and nothing loaded for nothing). Each hook finds its module only if something
already loaded it: without a hub there is no subscription to end, and without `_ending` no
``aiosig.run`` decided an exit status.
"""

import atexit
import sys


def _hub_at_exit() -> None:
    hub = sys.modules.get("aiosig._hub")
    if hub is not None:
        hub.at_exit()


def _apply_exit_status() -> None:
    ending = sys.modules.get("aiosig._ending")
    if ending is not None:
        ending.apply()


atexit.register(_hub_at_exit)
atexit.register(_apply_exit_status)  # registered last, runs first (Rule 1)
