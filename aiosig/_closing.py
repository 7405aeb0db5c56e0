"""The async forms of ``close()`` that receivers, timers and the watchdog share."""

from __future__ import annotations

from types import TracebackType
from typing import Self

__all__ = ("AsyncClosing",)


class AsyncClosing:
    """``close()`` (the subclass's), plus ``aclose()`` and ``async with``, which call it."""

    def close(self) -> None:
        """Stop (idempotent)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """The async form of `close`."""
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
