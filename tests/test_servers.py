"""Real servers under aiosig's shutdown: uvicorn, hypercorn, aiohttp, gunicorn + uvicorn workers.

Each test starts a real server in a fresh interpreter on 127.0.0.1, waits until it accepts
connections, makes real HTTP requests from threads, and sends real signals. The application
prints "finally" (from the ``finally`` around the server's entry point) and "atexit", and
answers ``/slow`` after 1 s, ``/stuck`` never, ``/`` at once, ``/seen`` with the signals an
aiosig handler registered in the application's startup hook has seen.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from tests._util import ROOT

pytest.importorskip("uvicorn")
pytest.importorskip("hypercorn")
pytest.importorskip("aiohttp")
pytest.importorskip("gunicorn")

ASGI_APP = textwrap.dedent(
    """
    import asyncio, atexit, os, signal, sys
    import aiosig

    atexit.register(lambda: print("atexit", flush=True))
    seen = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    # A handler the application registers in its startup hook.
                    aiosig.add_handler(signal.SIGUSR2, lambda info: seen.append("SIGUSR2"))
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    print("lifespan shutdown", flush=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        if path == "/slow":
            await asyncio.sleep(1.0)
        elif path == "/stuck":
            await asyncio.sleep(3600)
        body = (" ".join(seen) if path == "/seen" else "ok").encode()
        if path == "/pid":
            body = str(os.getpid()).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    def reload():
        print("reloaded", flush=True)

    reload_option = reload if "--reload" in sys.argv else None
    port = int(sys.argv[1])
    flavour = sys.argv[2]
    """
)

SERVERS = {
    "uvicorn": ASGI_APP
    + textwrap.dedent(
        """
        import aiosig.uvicorn
        try:
            aiosig.uvicorn.run(
                app, host="127.0.0.1", port=port, loop=flavour, grace=5, reload=reload_option,
                log_level="warning",
            )
        finally:
            print("finally", flush=True)
        """
    ),
    "hypercorn": ASGI_APP
    + textwrap.dedent(
        """
        import aiosig.hypercorn
        config = aiosig.hypercorn.Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.worker_class = flavour
        try:
            aiosig.hypercorn.run(app, config, grace=5, reload=reload_option)
        finally:
            print("finally", flush=True)
        """
    ),
    "aiohttp": textwrap.dedent(
        """
        import asyncio, atexit, signal, sys
        from aiohttp import web
        import aiosig, aiosig.aiohttp

        atexit.register(lambda: print("atexit", flush=True))
        seen = []

        async def on_startup(app):
            aiosig.add_handler(signal.SIGUSR2, lambda info: seen.append("SIGUSR2"))

        async def on_shutdown(app):
            print("lifespan shutdown", flush=True)

        async def slow(request):
            await asyncio.sleep(1.0)
            return web.Response(text="ok")

        async def stuck(request):
            await asyncio.sleep(3600)

        async def root(request):
            return web.Response(text="ok")

        async def show_seen(request):
            return web.Response(text=" ".join(seen))

        app = web.Application()
        app.on_startup.append(on_startup)
        app.on_shutdown.append(on_shutdown)
        app.add_routes(
            [web.get("/", root), web.get("/slow", slow), web.get("/stuck", stuck),
             web.get("/seen", show_seen)]
        )

        def reload():
            print("reloaded", flush=True)

        factory = None if sys.argv[2] == "asyncio" else __import__("uvloop").new_event_loop
        try:
            aiosig.aiohttp.run_app(
                app, host="127.0.0.1", port=int(sys.argv[1]), grace=5, loop_factory=factory,
                reload=reload if "--reload" in sys.argv else None,
            )
        finally:
            print("finally", flush=True)
        """
    ),
}

FLAVOURS = ["asyncio", "uvloop"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


class Served:
    """A server in a child process, listening on `port`."""

    def __init__(self, args: list[str], port: int, **extra_env: str) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env(), **extra_env},
            cwd=ROOT,
            start_new_session=True,  # kill() takes gunicorn's workers along
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        _, out, err = self.finish()
        raise AssertionError(f"the server did not listen on {port}\n{out}\n{err}")

    def get(self, path: str, timeout: float = 10) -> str:
        return self.get_status(path, timeout)[1]

    def get_status(self, path: str, timeout: float = 10) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def get_in_thread(self, path: str) -> dict[str, object]:
        result: dict[str, object] = {}

        def fetch() -> None:
            try:
                result["body"] = self.get(path)
            except Exception as exc:
                result["error"] = exc

        thread = threading.Thread(target=fetch, daemon=True)
        thread.start()
        result["thread"] = thread
        time.sleep(0.3)  # the request is in flight
        return result

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def kill(self) -> None:
        """SIGKILL the server's whole process group: an orphaned worker keeps the pipes open."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def finish(self, timeout: float = 10) -> tuple[int, str, str]:
        """Wait for the server to exit: (returncode, stdout, stderr); kill it if it does not."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"the server did not exit in {timeout} s\n{out}\n{err}") from None
        return self.proc.returncode, out, err


def _stop_all(started: list[Served]) -> None:
    """Kill what a test left running, with its process group (gunicorn's workers)."""
    for served in started:
        served.kill()
        served.proc.communicate()


@pytest.fixture
def serve() -> Iterator[object]:
    started: list[Served] = []

    def start(server: str, flavour: str, *extra: str) -> Served:
        port = free_port()
        code = SERVERS[server]
        served = Served([sys.executable, "-c", code, str(port), flavour, *extra], port)
        started.append(served)
        return served

    yield start
    _stop_all(started)


def cases() -> list[tuple[str, str]]:
    return [(server, flavour) for server in SERVERS for flavour in FLAVOURS]


@pytest.mark.parametrize(("server", "flavour"), cases())
def test_sigterm_while_idle_dies_of_sigterm_after_finally_and_atexit(
    serve: object, server: str, flavour: str
) -> None:
    served = serve(server, flavour)  # type: ignore[operator]
    assert served.get("/") == "ok"
    served.signal(signal.SIGTERM)
    returncode, out, err = served.finish()
    assert returncode == -signal.SIGTERM, err
    assert out.splitlines()[-3:] == ["lifespan shutdown", "finally", "atexit"], (out, err)


@pytest.mark.parametrize(("server", "flavour"), cases())
def test_sigterm_during_a_slow_request_lets_it_complete(
    serve: object, server: str, flavour: str
) -> None:
    served = serve(server, flavour)  # type: ignore[operator]
    request = served.get_in_thread("/slow")
    sent = time.monotonic()
    served.signal(signal.SIGTERM)
    returncode, _, err = served.finish()
    request["thread"].join(5)  # type: ignore[attr-defined]
    assert request.get("body") == "ok", (request, err)
    assert returncode == -signal.SIGTERM, err
    assert time.monotonic() - sent < 5, err  # within the budget


@pytest.mark.parametrize(("server", "flavour"), cases())
def test_second_sigterm_during_a_stuck_request_exits_well_before_the_deadline(
    serve: object, server: str, flavour: str
) -> None:
    served = serve(server, flavour)  # type: ignore[operator]
    served.get_in_thread("/stuck")
    sent = time.monotonic()
    served.signal(signal.SIGTERM)
    time.sleep(0.5)
    served.signal(signal.SIGTERM)
    returncode, _, err = served.finish()
    assert returncode == -signal.SIGTERM, err
    assert time.monotonic() - sent < 0.5 + 3 + 0.5, err  # the fast budget, not the 5 s grace


@pytest.mark.parametrize(("server", "flavour"), cases())
def test_sighup_reloads_when_asked_and_kills_otherwise(
    serve: object, server: str, flavour: str
) -> None:
    with_reload = serve(server, flavour, "--reload")  # type: ignore[operator]
    with_reload.signal(signal.SIGHUP)
    time.sleep(0.3)
    assert with_reload.get("/") == "ok"  # still serving
    with_reload.signal(signal.SIGTERM)
    returncode, out, err = with_reload.finish()
    assert returncode == -signal.SIGTERM and "reloaded" in out, err

    without = serve(server, flavour)  # type: ignore[operator]
    without.signal(signal.SIGHUP)
    returncode, _, err = without.finish()
    assert returncode == -signal.SIGHUP, err


@pytest.mark.parametrize(("server", "flavour"), cases())
def test_a_handler_registered_at_startup_sees_its_signals(
    serve: object, server: str, flavour: str
) -> None:
    served = serve(server, flavour)  # type: ignore[operator]
    served.signal(signal.SIGUSR2)
    time.sleep(0.2)
    assert served.get("/seen") == "SIGUSR2"
    served.signal(signal.SIGTERM)
    returncode, _, err = served.finish()
    assert returncode == -signal.SIGTERM, err


def test_import_aiosig_imports_no_server() -> None:
    code = (
        "import sys, aiosig; "
        "print(sorted(m for m in ('uvicorn', 'hypercorn', 'aiohttp', 'gunicorn') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env(), timeout=30
    )
    assert done.stdout.strip() == "[]", done.stderr


# ---- gunicorn with aiosig's uvicorn worker ---------------------------------------------------


@pytest.fixture
def gunicorn(tmp_path: os.PathLike[str]) -> Iterator[object]:
    started: list[Served] = []

    def start(worker: str = "aiosig.gunicorn.UvicornWorker") -> Served:
        with open(os.path.join(tmp_path, "asgi_app.py"), "w") as f:
            f.write(ASGI_APP.replace("port = int(sys.argv[1])\nflavour = sys.argv[2]\n", ""))
        port = free_port()
        args = [
            sys.executable, "-m", "gunicorn", "--chdir", str(tmp_path), "-w", "1",
            "-k", worker, "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5",
            "asgi_app:app",
        ]  # fmt: skip
        served = Served(args, port)
        started.append(served)
        return served

    yield start
    _stop_all(started)


def test_gunicorn_sigterm_lets_a_slow_request_complete_and_the_worker_exit_0(
    gunicorn: object,
) -> None:
    served = gunicorn()  # type: ignore[operator]
    request = served.get_in_thread("/slow")
    served.signal(signal.SIGTERM)
    returncode, out, err = served.finish()
    request["thread"].join(5)  # type: ignore[attr-defined]
    assert request.get("body") == "ok", (request, err)
    assert returncode == 0, err
    assert "lifespan shutdown" in out
    assert "was sent" not in err and "exited with code" not in err, err  # the worker's exit: 0


def test_gunicorn_sigquit_takes_the_fast_path_before_the_arbiters_sigkill(
    gunicorn: object,
) -> None:
    served = gunicorn()  # type: ignore[operator]
    served.get_in_thread("/stuck")
    sent = time.monotonic()
    served.signal(signal.SIGQUIT)
    returncode, _, err = served.finish()
    assert returncode == 0, err
    assert time.monotonic() - sent < 2.0, err  # the arbiter would SIGKILL after 2 s
    assert "SIGKILL" not in err and "exited with code" not in err, err


def test_gunicorn_worker_with_a_stuck_request_ends_itself_before_graceful_timeout(
    gunicorn: object,
) -> None:
    served = gunicorn()  # type: ignore[operator]
    served.get_in_thread("/stuck")
    sent = time.monotonic()
    served.signal(signal.SIGTERM)
    returncode, _, err = served.finish()
    assert returncode == 0, err
    assert time.monotonic() - sent < 5.0, err  # gunicorn's graceful_timeout: its SIGKILL
    assert "SIGKILL" not in err and "exited with code" not in err, err


def test_gunicorn_sighup_reloads_the_workers_and_keeps_serving(gunicorn: object) -> None:
    served = gunicorn()  # type: ignore[operator]
    first = served.get("/pid")
    served.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while served.get("/pid") == first and time.monotonic() < deadline:
        time.sleep(0.1)
    assert served.get("/pid") != first  # a new worker serves
    served.signal(signal.SIGTERM)
    returncode, _, err = served.finish()
    assert returncode == 0, err
    assert "exited with code" not in err and "was sent" not in err, err


def test_gunicorn_worker_handler_registered_at_startup_sees_its_signals(
    gunicorn: object,
) -> None:
    served = gunicorn()  # type: ignore[operator]
    os.kill(int(served.get("/pid")), signal.SIGUSR2)
    time.sleep(0.2)
    assert served.get("/seen") == "SIGUSR2"
    served.signal(signal.SIGTERM)
    returncode, _, err = served.finish()
    assert returncode == 0, err


def test_gunicorn_sigterm_to_the_whole_group_still_lets_requests_finish(
    gunicorn: object,
) -> None:
    # systemd's KillMode=control-group, dumb-init and tini -g signal every process: the
    # worker gets SIGTERM twice (from the sender, then from the arbiter); not an escalation.
    served = gunicorn()  # type: ignore[operator]
    request = served.get_in_thread("/slow")
    os.killpg(served.proc.pid, signal.SIGTERM)
    returncode, out, err = served.finish()
    request["thread"].join(5)  # type: ignore[attr-defined]
    assert request.get("body") == "ok", (request, err)
    assert returncode == 0, err
    assert "lifespan shutdown" in out and "fast shutdown" not in err, err


def test_gunicorn_ctrl_c_to_the_whole_group_is_one_quick_stop_not_an_escalation(
    gunicorn: object,
) -> None:
    # SIGINT from the terminal, then SIGQUIT from the arbiter: gunicorn's quick stop, once.
    served = gunicorn()  # type: ignore[operator]
    assert served.get("/") == "ok"  # the worker has started
    served.get_in_thread("/stuck")
    sent = time.monotonic()
    os.killpg(served.proc.pid, signal.SIGINT)
    returncode, _, err = served.finish()
    assert returncode == 0, err
    assert time.monotonic() - sent < 2.0, err  # within the arbiter's quick-stop wait
    assert err.count("fast shutdown") == 1 and "third stop signal" not in err, err
    assert "exited with code" not in err and "was sent" not in err, err
