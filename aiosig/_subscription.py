"""Subscriptions: what the hub delivers to (entry points validate with `check_signal`)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterable
from types import FrameType
from typing import TYPE_CHECKING, Any

from ._convert import check_signal  # its home before ``_convert``; kept for importers
from ._siginfo import SigInfo

if TYPE_CHECKING:
    from ._hub import Hub

__all__ = (
    "Deliver",
    "FrameHook",
    "Handler",
    "Reservation",
    "Subscription",
    "check_signal",
    "signal_name",
)

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None
Deliver = Callable[[SigInfo], object]
FrameHook = Callable[[int, FrameType | None], object]


class Subscription:
    """Deliveries of some signals to one callback on one loop; ``close()`` is idempotent."""

    def __init__(
        self,
        hub: Hub,
        signals: frozenset[int],
        deliver: Deliver,
        loop: asyncio.AbstractEventLoop,
        chain: bool = True,
        in_handler: FrameHook | None = None,
        on_end: Callable[[], object] | None = None,
    ) -> None:
        self.signals = signals
        self.loop = loop
        self.chain = chain
        self.in_handler = in_handler
        self._on_end = on_end
        self._deliver = deliver
        self._hub = hub
        self.closed = False
        self.attached = True  # counted in its loop's reader (the hub's business)

    def deliver(self, info: SigInfo) -> None:
        """Call the callback; an exception goes to the loop's exception handler."""
        if self.closed:
            return
        try:
            self._deliver(info)
        except Exception as exc:
            self.loop.call_exception_handler(
                {"message": "aiosig subscription callback failed", "exception": exc}
            )

    def close(self, unconsumed: Iterable[SigInfo] = ()) -> None:
        """Stop deliveries; the last subscription of a signal restores its disposition.

        Args:
            unconsumed: Deliveries this subscription took but nobody acted on (a receiver's
                buffer). With no other live subscription of their signal, they count as
                deliveries nobody took: the signal is raised again if its restored
                disposition is the default action.
        """
        if not self.closed:
            self._hub.unsubscribe(self, unconsumed)  # sets `closed`, in the same change

    def end(self) -> None:
        """The hub ends the subscription (its loop shut down): the owner closes, or it does."""
        try:
            if self._on_end is not None:
                self._on_end()
        finally:
            self.close()  # whatever the owner did (or failed to do)

    def __repr__(self) -> str:
        names = ",".join(sorted(signal_name(s) for s in self.signals))
        return f"<Subscription {names}{' closed' if self.closed else ''}>"


_NAMES = frozenset(int(s) for s in signal.Signals)


def signal_name(signum: int) -> str:
    """``SIGUSR1`` for 10, ``35`` for a real-time signal without a name."""
    return signal.Signals(signum).name if signum in _NAMES else str(signum)


class Reservation:
    """Signals installed from the main thread without a loop (made by `aiosig.reserve`).

    ``close()`` (or leaving ``with``) releases them.
    """

    def __init__(self, hub: Hub, signals: frozenset[int]) -> None:
        self.signals = signals
        self._hub = hub
        self.closed = False

    def close(self) -> None:
        """Release the signals; idempotent."""
        if not self.closed:
            self._hub.release(self.signals, self)  # sets `closed`, in the same change

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
