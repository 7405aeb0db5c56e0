"""aiosig's atexit and fork hooks: their places are taken when aiosig is imported.

Theory of operation
-------------------
Rule 1 (places taken at import, in a fixed order). ``aiosig/__init__.py`` loads its modules
on first use, so that importing aiosig stays cheap; but where a hook runs among the process's
hooks depends on when it was registered, and aiosig's must keep the places they had when
every module loaded at import. So the places are registered here, by ``import aiosig``, and
the owners fill them when they load (`at_exit`, `after_fork_in_child`). A place whose owner
never loaded stays empty: without a hub there is no subscription to end, without ``_ending``
no ``aiosig.run`` decided an exit status, without ``_itimers`` no timer to forget. None of
this touches signal state: it is DESIGN.md's one accepted exception to "nothing happens at
import".

Rule 2 (atexit: after the application's hooks). atexit runs last-registered-first, so both
places, registered at ``import aiosig``, run after every hook the application registers
later. The exit status's (``_ending``: the process ends as the signal that stopped the
service would end it) runs first; when it had nothing to apply, the hub's runs (loops that
will never run again end their subscriptions, so a buffered delivery still takes its default
action).

Rule 3 (fork: before the application's hooks). ``after_in_child`` hooks run first-registered
first, so in a child the hub drops its parent's state, then the interval timers theirs, before
any hook the application registered after ``import aiosig`` can use aiosig.
"""

import atexit
import os
from collections.abc import Callable

# Registered in this order; atexit runs them in the reverse one (Rule 2).
EXIT_ORDER = ("hub", "exit status")
# Registered, and run, in this order (Rule 3).
FORK_ORDER = ("hub", "itimers")

_at_exit: dict[str, Callable[[], object]] = {}
_after_fork: dict[str, Callable[[], object]] = {}


def at_exit(place: str, hook: Callable[[], object]) -> None:
    """Run `hook` at interpreter exit, in `place`'s position of `EXIT_ORDER` (Rule 2)."""
    if place not in EXIT_ORDER:
        raise ValueError(f"no atexit place {place!r}")
    _at_exit[place] = hook


def after_fork_in_child(place: str, hook: Callable[[], object]) -> None:
    """Run `hook` in a forked child, in `place`'s position of `FORK_ORDER` (Rule 3)."""
    if place not in FORK_ORDER:
        raise ValueError(f"no fork place {place!r}")
    _after_fork[place] = hook


def _run(hooks: dict[str, Callable[[], object]], place: str) -> None:
    hook = hooks.get(place)
    if hook is not None:
        hook()


for _place in EXIT_ORDER:
    atexit.register(_run, _at_exit, _place)
if hasattr(os, "register_at_fork"):
    for _place in FORK_ORDER:
        os.register_at_fork(after_in_child=lambda place=_place: _run(_after_fork, place))
