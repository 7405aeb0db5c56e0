"""aiosig: POSIX signals for asyncio and uvloop.

Every name here is re-exported from a private module; ``__all__`` is kept honest by
``tests/test_public_api.py``.
"""

from ._siginfo import SigInfo

__all__ = ("SigInfo",)
