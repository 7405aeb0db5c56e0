"""aiohttp under aiosig's shutdown: ``aiosig.aiohttp.run_app(app, host=..., port=...)``.

Needs aiohttp (``pip install 'aiosig[aiohttp]'``); see the "Servers" guide.
"""

from ._aiohttp import run_app, serve_app

__all__ = ("run_app", "serve_app")
