"""hypercorn under aiosig's shutdown: ``aiosig.hypercorn.run(app, config)``.

Needs hypercorn (``pip install 'aiosig[hypercorn]'``); see the "Servers" guide.
"""

from ._hypercorn import Config, run, serve

__all__ = ("Config", "run", "serve")
