"""uvicorn under aiosig's shutdown: ``aiosig.uvicorn.run(app, host=..., port=...)``.

Needs uvicorn (``pip install 'aiosig[uvicorn]'``); see the "Servers" guide.
"""

from ._uvicorn import Server, run, serve

__all__ = ("Server", "run", "serve")
