"""gunicorn configuration: ``asgi_app`` in uvicorn workers run under aiosig's shutdown.

Run it from the repository root with ``gunicorn -c examples/gunicorn.conf.py`` (``PORT`` and
``WORKERS`` in the environment change the port and the number of workers).

- SIGTERM to the arbiter: each worker stops accepting, finishes the requests in flight
  within ``graceful_timeout`` (its aiosig budget ends half a second before the arbiter's
  SIGKILL) and exits 0, as gunicorn expects of a worker it stopped.
- SIGQUIT or SIGINT: the workers take aiosig's fast path at once.
- SIGHUP: gunicorn reloads this file and the application, starting new workers and stopping
  the old ones gracefully.
"""

import os

chdir = os.path.dirname(os.path.abspath(__file__))
wsgi_app = "asgi_app:app"
worker_class = "aiosig.gunicorn.UvicornWorker"
bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WORKERS", "2"))
graceful_timeout = 20
