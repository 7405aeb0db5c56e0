"""The shutdown matrix of docs/guide/servers.md: each server alone, then under aiosig.

Run it with ``python scripts/server_matrix.py`` (needs the test extra: uvicorn, hypercorn,
aiohttp, gunicorn, uvicorn-worker). For each server it runs the applications of
tests/test_servers.py on the asyncio loop, once started the server's own way and once
through aiosig's adapter, and prints one markdown table: how SIGTERM ends an idle server (exit
status, whether ``finally`` and atexit ran), whether a slow request in flight completes, how
long a second SIGTERM takes to end a server stuck on a request, what SIGHUP does, and whether
an aiosig handler registered in the startup hook sees its signal.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_servers import ASGI_APP, SERVERS, Served, free_port  # noqa: E402

ALONE = {
    "uvicorn": ASGI_APP
    + """
import uvicorn
try:
    uvicorn.run(app, host="127.0.0.1", port=port, loop=flavour, log_level="warning")
finally:
    print("finally", flush=True)
""",
    "hypercorn": ASGI_APP
    + """
import asyncio
import hypercorn.asyncio
from hypercorn.config import Config
config = Config()
config.bind = [f"127.0.0.1:{port}"]
try:
    asyncio.run(hypercorn.asyncio.serve(app, config))
finally:
    print("finally", flush=True)
""",
    "aiohttp": SERVERS["aiohttp"]
    .replace("aiosig.aiohttp.run_app(", "web.run_app(")
    .replace("grace=5, loop_factory=factory,", "print=None,")
    .replace('reload=reload if "--reload" in sys.argv else None,', ""),
}
GIVE_UP = 12.0  # seconds after which a server that has not exited counts as hung


def status(returncode: int | None) -> str:
    if returncode is None:
        return f"hung (> {GIVE_UP:g} s)"
    if returncode < 0:
        return f"death by {signal.Signals(-returncode).name}"
    return f"exit {returncode}"


def ended(served: Served) -> tuple[int | None, str, str, float]:
    start = time.monotonic()
    try:
        returncode, out, err = served.finish(timeout=GIVE_UP)
    except AssertionError:
        return None, "", "", GIVE_UP
    return returncode, out, err, time.monotonic() - start


def start(code: str | None, gunicorn_worker: str | None, *extra: str) -> Served:
    port = free_port()
    if gunicorn_worker is None:
        assert code is not None
        return Served([sys.executable, "-c", code, str(port), "asyncio", *extra], port)
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"aiosig-matrix-{os.getpid()}"
    scratch.mkdir(exist_ok=True)
    (scratch / "asgi_app.py").write_text(
        ASGI_APP.replace("port = int(sys.argv[1])\nflavour = sys.argv[2]\n", "")
    )
    args = [
        sys.executable, "-m", "gunicorn", "--chdir", str(scratch), "-w", "1", "-k",
        gunicorn_worker, "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5", "asgi_app:app",
    ]  # fmt: skip
    return Served(args, port)


def row(name: str, code: str | None, worker: str | None) -> str:
    served = start(code, worker)
    served.signal(signal.SIGTERM)
    returncode, out, _, _ = ended(served)
    ran = [what for what in ("finally", "atexit") if what in out.split()]
    idle = f"{status(returncode)}; ran: {', '.join(ran) or 'neither'}"

    served = start(code, worker)
    request = served.get_in_thread("/slow")
    served.signal(signal.SIGTERM)
    returncode, _, _, took = ended(served)
    request["thread"].join(2)  # type: ignore[attr-defined]
    slow = f"{'completes' if request.get('body') == 'ok' else 'lost'}; {status(returncode)}"

    served = start(code, worker)
    served.get_in_thread("/stuck")
    served.signal(signal.SIGTERM)
    time.sleep(0.5)
    second = signal.SIGTERM if worker is None else signal.SIGQUIT
    served.signal(second)
    returncode, _, _, took = ended(served)
    stuck = f"{status(returncode)} after {took + 0.5:.1f} s"
    if returncode is None:
        stuck = status(None)

    served = start(code, worker)
    served.signal(signal.SIGHUP)
    time.sleep(1.0)
    alive = served.proc.poll() is None
    hup = "serves on (gunicorn reloads)" if alive else status(served.proc.poll())
    if alive:
        served.kill()
        served.proc.communicate()

    served = start(code, worker)
    pid = int(served.get("/pid")) if worker is not None else served.proc.pid
    os.kill(pid, signal.SIGUSR2)
    time.sleep(0.3)
    seen = "yes" if served.get("/seen") == "SIGUSR2" else "no"
    served.kill()
    served.proc.communicate()
    return f"| {name} | {idle} | {slow} | {stuck} | {hup} | {seen} |"


def main() -> None:
    print(
        "| server | SIGTERM while idle | SIGTERM during a 1 s request | 2nd signal, stuck "
        "request | SIGHUP, no reload | startup handler sees SIGUSR2 |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for server in ("uvicorn", "hypercorn", "aiohttp"):
        print(row(f"{server} alone", ALONE[server], None), flush=True)
        print(row(f"{server} under aiosig", SERVERS[server], None), flush=True)
    print(row("gunicorn + uvicorn-worker", None, "uvicorn_worker.UvicornWorker"), flush=True)
    print(row("gunicorn + aiosig worker", None, "aiosig.gunicorn.UvicornWorker"), flush=True)


if __name__ == "__main__":
    main()
