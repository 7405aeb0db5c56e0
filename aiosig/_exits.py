"""aiosig's atexit hooks, registered when aiosig is imported, in the order they must run.

Theory of operation
-------------------
Rule 1 (registered at import, in a fixed order). atexit runs its hooks last-registered-first.
Two of aiosig's must run after every hook of the application that imports aiosig, so their
places are taken here, when ``import aiosig`` runs, and not when the modules that own them
are first loaded (``aiosig/__init__.py`` loads those on first use, so that importing aiosig
stays cheap). Their owners fill the places when they load (`at_exit`): the exit status's
(``_ending``: the process ends as the signal that stopped the service would end it) runs
first, and when it had nothing to apply the hub's runs after it (loops that will never run
again end their subscriptions, so that a buffered delivery still takes its default action),
the order the two had when each module registered its own hook at import. Neither touches
signal state: this is DESIGN.md's one accepted exception to "nothing happens at import".

Rule 2 (nothing loaded for nothing). A place whose owner never loaded stays empty: without a
hub there is no subscription to end, and without ``_ending`` no ``aiosig.run`` decided an
exit status.
"""

import atexit
from collections.abc import Callable

# Registered in this order, so they run in the reverse one (Rule 1).
ORDER = ("hub", "exit status")

_hooks: dict[str, Callable[[], object]] = {}


def at_exit(place: str, hook: Callable[[], object]) -> None:
    """Run `hook` at interpreter exit, in `place`'s position of `ORDER` (Rule 1)."""
    if place not in ORDER:
        raise ValueError(f"no atexit place {place!r}")
    _hooks[place] = hook


def _run(place: str) -> None:
    hook = _hooks.get(place)
    if hook is not None:
        hook()


for _place in ORDER:
    atexit.register(_run, _place)
