"""gunicorn with uvicorn workers under aiosig's shutdown.

``gunicorn -k aiosig.gunicorn.UvicornWorker app:app``. Needs gunicorn and uvicorn-worker
(``pip install 'aiosig[gunicorn]'``); see the "Servers" guide.
"""

from ._gunicorn import UvicornH11Worker, UvicornWorker

__all__ = ("UvicornH11Worker", "UvicornWorker")
