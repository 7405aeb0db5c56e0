"""gunicorn's uvicorn worker, with the worker's signals run through ``aiosig.run``.

Theory of operation
-------------------
Rule 1 (gunicorn's meaning of the signals a worker gets). The arbiter stops workers with
SIGTERM (graceful: finish the requests in flight within ``graceful_timeout``, then it sends
SIGKILL) or SIGQUIT (quick; when a quick stop is asked during a graceful one, it waits only
2 s more). A terminal's Ctrl-C sends SIGINT to the whole foreground group, workers included.
`UvicornWorker` maps them onto aiosig's shutdown: SIGTERM is a stop signal (the graceful
path), SIGQUIT and SIGINT are fast signals (the fast path at once). Each means only itself
however often it comes (``escalate=False``): a worker commonly gets each signal twice, once
from a group-wide kill (systemd's ``KillMode=control-group``, dumb-init, ``tini -g``, Ctrl-C)
and once from the arbiter passing it on, and counting the second as an escalation would cut
the requests in flight short. The arbiter's SIGKILL is the last resort, as in gunicorn. The
budget is ``graceful_timeout`` less half a second, so the worker ends on its own before that
SIGKILL; the fast budget (1.5 s) fits in the arbiter's 2 s.

Rule 2 (a worker's exit status is gunicorn's convention): 0 after a stop the arbiter asked
for (the arbiter logs any other status, or death by a signal, as an error), 3
(``WORKER_BOOT_ERROR``) when the server could not start, so that the arbiter gives up.

Rule 3 (built on the ``uvicorn-worker`` package, uvicorn's successor to its deprecated
``uvicorn.workers``): its configuration from gunicorn's settings, its heartbeat
(``callback_notify``), its SIGUSR1 (gunicorn's log reopening) are kept; only ``run`` changes.
A worker does not speak to systemd: the arbiter is the service's main process.
"""

from __future__ import annotations

import os
import signal
import sys

from ._run import run as aiosig_run
from ._serving import server_missing
from ._uvicorn import Server, serve_server

try:
    from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
    from uvicorn_worker import UvicornWorker as _UvicornWorker  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - the test extra installs them
    raise server_missing("gunicorn and uvicorn-worker", "gunicorn") from exc

__all__ = ("UvicornH11Worker", "UvicornWorker")

QUICK_SHUTDOWN = 2.0  # seconds gunicorn's arbiter waits after SIGQUIT before SIGKILL


class UvicornWorker(_UvicornWorker):  # type: ignore[misc]  # gunicorn ships no types
    """A gunicorn worker running uvicorn under ``aiosig.run``.

    Use it as ``gunicorn -k aiosig.gunicorn.UvicornWorker app:app``.
    """

    def run(self) -> None:
        os.environ.pop("NOTIFY_SOCKET", None)  # Rule 3: the arbiter speaks to systemd
        grace = max(0.5, float(self.cfg.graceful_timeout) - 0.5)
        aiosig_run(
            self._serve_under_aiosig(),
            grace=grace,
            fast_grace=min(QUICK_SHUTDOWN - 0.5, grace),
            stop_signals=(signal.SIGTERM,),
            fast_signals=(signal.SIGQUIT, signal.SIGINT),
            escalate=False,  # Rule 1: TERM from a group-wide kill, then from the arbiter
            exit_status="zero",
            loop_factory=self.config.get_loop_factory(),
        )

    async def _serve_under_aiosig(self) -> None:
        self.config.app = self.wsgi
        server = Server(self.config)
        await serve_server(server, self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


class UvicornH11Worker(UvicornWorker):
    """`UvicornWorker` with the asyncio loop and the pure-Python h11 HTTP implementation."""

    CONFIG_KWARGS = {"loop": "asyncio", "http": "h11"}  # noqa: RUF012  (uvicorn-worker's)
