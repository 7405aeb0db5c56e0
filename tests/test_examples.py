"""The examples run and do what their docstrings say, on both loops."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from tests._util import ROOT, finish, run_child

# name: (arguments, expected exit status, lines expected on stdout)
EXAMPLES = {
    "hello_signals.py": (
        [],
        0,
        ["received SIGUSR1 from pid", "received SIGHUP, plain delivery", "done"],
    ),
    "reload_config.py": (
        ["--demo"],
        -signal.SIGTERM,
        ["generation 1: {'greeting': 'hi'}", "generation 3: {'greeting': 'bonjour'}", "stopping"],
    ),
}


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs(name: str, flavour: str) -> None:
    extra, status, expected = EXAMPLES[name]
    args = [sys.executable, str(ROOT / "examples" / name), *extra]
    if flavour == "uvloop":
        args.append("--uvloop")
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == status, done.stderr
    for line in expected:
        assert line in done.stdout, done.stdout


# Runs the example as its own __main__, and prints READY once it listens.
TCP_SERVER = """
import runpy, sys, builtins
path = sys.argv[1]
sys.argv = [path, *sys.argv[2:]]
real_print = builtins.print
def print(*args, **kwargs):
    real_print(*args, **kwargs)
    if args and str(args[0]).startswith("listening on"):
        real_print("READY", flush=True)
builtins.print = print
runpy.run_path(path, run_name="__main__")
"""


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
def test_tcp_server_drains_its_connections_on_sigterm(flavour: str) -> None:
    extra = ["--uvloop"] if flavour == "uvloop" else []
    child = run_child(TCP_SERVER, str(ROOT / "examples" / "tcp_server.py"), *extra)
    port = int(child.before_ready.split(":")[-1])
    busy, idle = _connect(port), _connect(port)
    busy_lines, idle_lines = busy.makefile("rb"), idle.makefile("rb")
    idle.sendall(b"hello\n")
    assert idle_lines.readline() == b"hello\n"
    busy.sendall(b"work 1.0\n")
    time.sleep(0.2)  # the request is in flight
    child.send_signal(signal.SIGTERM)
    assert idle_lines.readline() == b"bye\n"  # an idle connection is told at once
    time.sleep(0.2)
    with pytest.raises(ConnectionRefusedError):
        _connect(port)  # no longer accepting
    assert busy_lines.readline() == b"done\n"  # the request in flight completed
    assert busy_lines.readline() == b"bye\n"
    returncode, out, err = finish(child)
    assert returncode == -signal.SIGTERM, err
    assert "draining 2 connection(s)" in out and "all connections closed" in out
    for closing in (busy_lines, idle_lines, busy, idle):
        closing.close()


# ---- the server examples ---------------------------------------------------------------------

SERVER_EXAMPLES = {
    "serve_uvicorn.py": (["--loop", "asyncio"], ["--loop", "uvloop"], "lifespan shutdown"),
    "serve_hypercorn.py": (["--loop", "asyncio"], ["--loop", "uvloop"], "lifespan shutdown"),
    "aiohttp_app.py": ([], ["--uvloop"], "cleanup: closing"),
}


@pytest.mark.parametrize("flavour", ["asyncio", "uvloop"])
@pytest.mark.parametrize("name", sorted(SERVER_EXAMPLES))
def test_server_example_reloads_on_sighup_and_drains_on_sigterm(name: str, flavour: str) -> None:
    from tests.test_servers import Served, free_port

    on_asyncio, on_uvloop, last_words = SERVER_EXAMPLES[name]
    port = free_port()
    args = [sys.executable, str(ROOT / "examples" / name), "--port", str(port), "--drain", "1"]
    served = Served(args + (on_asyncio if flavour == "asyncio" else on_uvloop), port)
    try:
        assert served.get_status("/healthz") == (200, "ok\n")
        served.signal(signal.SIGHUP)
        time.sleep(0.3)
        assert served.get("/") == "hello\n"  # still serving after the reload
        served.signal(signal.SIGTERM)
        time.sleep(0.3)
        assert served.get_status("/healthz") == (503, "draining\n")  # during the drain
        returncode, out, err = served.finish()
    finally:
        served.kill()
        served.proc.communicate()
    assert returncode == -signal.SIGTERM, err
    assert out.count("settings loaded") == 2, out  # at startup, then on SIGHUP
    assert last_words in out


def test_gunicorn_example_config_runs_the_aiosig_worker() -> None:
    from tests.test_servers import Served, free_port

    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "examples" / "gunicorn.conf.py")]
    served = Served(args, port, PORT=str(port), WORKERS="1")
    try:
        assert served.get_status("/healthz") == (200, "ok\n")
        served.signal(signal.SIGHUP)  # gunicorn reloads: a new worker loads the settings
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and served.proc.poll() is None:
            time.sleep(0.2)
            if served.get("/") == "hello\n":
                break
        served.signal(signal.SIGTERM)
        returncode, out, err = served.finish()
    finally:
        served.kill()
        served.proc.communicate()
    assert returncode == 0, err
    assert out.count("settings loaded") >= 2 and "lifespan shutdown" in out, (out, err)
    assert "exited with code" not in err and "was sent" not in err, err
