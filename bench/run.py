"""aiosig's benchmark suite: speed and memory, side by side with the alternatives, in one run.

    python bench/run.py                 # everything, about 3 minutes
    python bench/run.py --quick         # a ~25 s smoke run (CI)
    python bench/run.py --json out.json # also write every result
    python bench/run.py --only latency,throughput

Theory of operation
-------------------
This process only plans and reports: it never touches a signal. Every measurement runs in a
fresh worker (``run.py --worker SPEC``), so that process-wide signal state, the aiosig hub
and the allocator start clean each time, a crash or a hang costs one case (the worker is
killed after a timeout, and its peers die with it), and the rounds of one case are separate
processes interleaved with the other cases: noise from whatever else runs on the machine is
spread over every mechanism instead of hitting one. Medians are over rounds; the spread is
the range of the per-round medians.

Scenarios (see docs/benchmarks.md): latency, throughput, memory, fullbuffer, idle, calls,
fanout, imports. ``--charts DIR`` also draws one PNG per section (latency, throughput,
fan-out) with matplotlib (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The scenario modules, and aiosig from this checkout (or from --aiosig-rev's export, which a
# worker finds in its spec).
sys.path[:0] = [str(HERE), str(ROOT)]

import _common  # noqa: E402
import _fanout  # noqa: E402
import _idle  # noqa: E402
import _imports  # noqa: E402
import _latency  # noqa: E402
import _memory  # noqa: E402
import _throughput  # noqa: E402
from _report import report  # noqa: E402

SCENARIOS = (
    "latency", "throughput", "memory", "fullbuffer", "idle", "calls", "fanout", "imports",
)  # fmt: skip
WORKER_TIMEOUT = {"memory": 600.0, "throughput": 120.0, "fanout": 120.0, "imports": 300.0}
# Throughput runs the flooder and the receiver in parallel, on both CPUs; everything else is
# pinned to one CPU, peers included (see docs/benchmarks.md: it cuts the latency's p99 3x).
UNPINNED = {"throughput"}

FULL = {
    "rounds": {
        "latency": 5,
        "throughput": 3,
        "memory": 1,
        "fullbuffer": 1,
        "idle": 3,
        "calls": 2,
        "fanout": 3,
        "imports": 1,
    },
    "latency_n": 2000,
    "latency_warmup": 200,
    "throughput_n": 100_000,
    "memory_n": (1, 100, 10_000),
    "idle_n": 20_000,
    "idle_many": 1_000,
    "calls_n": 500,
    "fullbuffer_n": 1 << 16,
    "fanout_n": (1, 10, 100, 1000),
    "fanout_trips": 1000,
    "imports_n": 21,
}
QUICK = {
    "rounds": dict.fromkeys(SCENARIOS, 1),
    "latency_n": 300,
    "latency_warmup": 50,
    "throughput_n": 5_000,
    "memory_n": (1, 100),
    "idle_n": 2_000,
    "idle_many": 100,
    "calls_n": 100,
    "fullbuffer_n": 1 << 12,
    "fanout_n": (1, 100),
    "fanout_trips": 200,
    "imports_n": 5,
}

# ---- planning ------------------------------------------------------------------------------


def _available(loop: str, mech: str, needs: dict[str, str]) -> bool:
    if loop == "uvloop" and not _common.have("uvloop"):
        return False
    module = needs.get(mech)
    return module is None or _common.have(module)


def plan(params: dict[str, Any], only: set[str]) -> list[dict[str, Any]]:
    """Every case to run, each round a separate entry, interleaved."""
    cases: list[dict[str, Any]] = []

    def add(scenario: str, table: dict[str, tuple[str, ...]], needs: dict[str, str], **kw: Any):
        if scenario not in only:
            return
        for mech, loops in table.items():
            for loop in loops:
                if _available(loop, mech, needs):
                    cases.append({"scenario": scenario, "mech": mech, "loop": loop, **kw})

    add("latency", _latency.MECHANISMS, _latency.NEEDS,
        n=params["latency_n"], warmup=params["latency_warmup"])  # fmt: skip
    add("throughput", _throughput.MECHANISMS, _throughput.NEEDS, n=params["throughput_n"])
    for case in cases:
        if case["scenario"] == "throughput":
            case["n"] = min(case["n"], _throughput.MAX_N.get(case["mech"], case["n"]))
    for n in params["memory_n"]:
        # Bytes per object do not depend on the loop (both are measured up to 100, and
        # agree): the largest N, quadratic in time, runs on asyncio only, and without anyio
        # (each of its receivers replaces the previous one's add_signal_handler: 10,000 of
        # them is not a configuration that works).
        big = n >= 10_000
        table = {
            m: tuple(x for x in ls if x == "asyncio" or not big)
            for m, ls in _memory.MECHANISMS.items()
            if (n == 1 or "(1 only)" not in m) and not (big and m.startswith("anyio"))
        }
        add("memory", table, _memory.NEEDS, kind="each", n=n)
        for case in cases:
            if (
                big
                and case["scenario"] == "memory"
                and case["n"] == n
                and "precise" in case["mech"]
            ):
                case["trace"] = False  # ~85 s under tracemalloc (quadratic): time and RSS only
    add("fullbuffer", _memory.FULL, _memory.NEEDS, kind="full", n=params["fullbuffer_n"])
    add("idle", _idle.IDLE, _idle.NEEDS, kind="idle", n=params["idle_n"],
        many=params["idle_many"])  # fmt: skip
    add("calls", _idle.CALLS, _idle.NEEDS, kind="calls", n=params["calls_n"])
    for n in params["fanout_n"]:
        add("fanout", _fanout.MECHANISMS, _fanout.NEEDS, n=n, trips=params["fanout_trips"],
            warmup=params["latency_warmup"])  # fmt: skip
    add("imports", _imports.MECHANISMS, _imports.NEEDS, n=params["imports_n"])
    if params["cpu"] is not None:
        for case in cases:
            if case["scenario"] not in UNPINNED:
                case["cpu"] = params["cpu"]
    rng = random.Random(1)
    ordered = []
    for r in range(max(params["rounds"].values())):
        batch = [dict(c, round=r) for c in cases if r < params["rounds"][c["scenario"]]]
        rng.shuffle(batch)
        ordered.extend(batch)
    return ordered


# ---- running -------------------------------------------------------------------------------


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Run one case in a fresh worker; return its result, or the error."""
    timeout = WORKER_TIMEOUT.get(case["scenario"], 60.0)
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(case)]
    start, busy, ours = time.monotonic(), _cpu_busy_s(), _children_cpu_s()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**case, "ok": False, "error": f"worker timed out after {timeout:g} s"}
    wall = time.monotonic() - start
    others = (_cpu_busy_s() - busy) - (_children_cpu_s() - ours)
    out = {
        **case,
        "seconds": round(wall, 2),
        "background_cpu": round(max(0.0, others) / (wall * (os.cpu_count() or 1)), 3),
    }
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return {**out, **json.loads(line[len("RESULT ") :])}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {**out, "ok": False, "error": f"worker exit {proc.returncode}: {' | '.join(tail)}"}


def run_all(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the cases one after the other (never in parallel: they share two CPUs)."""
    results = []
    for i, case in enumerate(cases, 1):
        label = f"{case['scenario']} / {case['mech']} / {case['loop']} / n={case.get('n')}"
        print(f"[{i}/{len(cases)}] {label}", file=sys.stderr, flush=True)
        results.append(run_case(case))
        if not results[-1].get("ok"):
            print(f"    FAILED: {results[-1].get('error')}", file=sys.stderr, flush=True)
    return results


def _cpu_busy_s() -> float:
    """CPU seconds all CPUs spent busy since boot (/proc/stat), to estimate background load."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def worker(case: dict[str, Any]) -> None:
    """The worker side: measure one case, check the signal state, print one RESULT line."""
    _common.die_with_parent()  # a runner that is killed takes its worker (and peers) along
    if case.get("cpu") is not None:
        os.sched_setaffinity(0, {case["cpu"]})  # its peers inherit it
    if case.get("src"):
        sys.path.insert(0, case["src"])  # before anything imports aiosig
    module = {
        "latency": _latency,
        "throughput": _throughput,
        "memory": _memory,
        "fullbuffer": _memory,
        "idle": _idle,
        "calls": _idle,
        "fanout": _fanout,
        "imports": _imports,
    }[case["scenario"]]
    before = _common.signal_state()
    result: dict[str, Any] = {"ok": True}
    try:
        result["data"] = module.measure(case)
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    after = _common.signal_state()
    result["state"] = _common.NOTES + _common.state_changes(before, after)
    if "aiosig" in sys.modules:
        result["aiosig"] = os.path.dirname(sys.modules["aiosig"].__file__ or "")
    print("RESULT " + json.dumps(result, default=str), flush=True)


# ---- what is measured, and where ----------------------------------------------------------


def export(rev: str) -> tuple[str, str]:
    """Export aiosig/ at `rev` to a temporary directory: a snapshot nobody edits meanwhile."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", rev + "^{commit}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "aiosig"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    where = tempfile.mkdtemp(prefix="aiosig-bench-")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    return where, commit


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {"python": platform.python_version()}
    for name in ("uvloop", "anyio", "trio"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = None
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "versions": versions,
        "aiosig_commit": commit or None,
        "rlimit_sigpending": resource.getrlimit(resource.RLIMIT_SIGPENDING)[0],
        "loadavg_start": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a ~25 s smoke run")
    parser.add_argument("--json", metavar="FILE", help="write every result to FILE")
    parser.add_argument("--only", metavar="LIST", help=f"comma-separated: {','.join(SCENARIOS)}")
    parser.add_argument("--rounds", type=int, help="rounds of every scenario (default: varies)")
    parser.add_argument(
        "--cpu", type=int, default=(os.cpu_count() or 1) - 1, help="CPU to pin workers to"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin workers to a CPU")
    parser.add_argument(
        "--aiosig-rev",
        metavar="REV",
        help="benchmark aiosig as committed at REV (e.g. HEAD), not the working tree",
    )
    parser.add_argument(
        "--charts", metavar="DIR", help="draw one PNG per section in DIR (needs matplotlib)"
    )
    parser.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    params = dict(QUICK if args.quick else FULL)
    params["cpu"] = None if args.no_pin else args.cpu
    if args.rounds:
        params["rounds"] = dict.fromkeys(SCENARIOS, args.rounds)
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    if only - set(SCENARIOS):
        parser.error(f"unknown scenario(s): {', '.join(sorted(only - set(SCENARIOS)))}")
    meta = machine()
    cases = plan(params, only)
    src = None
    if args.aiosig_rev:
        src, meta["aiosig_commit"] = export(args.aiosig_rev)
        for case in cases:
            case["src"] = src
    started = time.monotonic()
    try:
        results = run_all(cases)
    finally:  # Ctrl-C included: subprocess.run kills the running worker, its peers follow
        if src:
            shutil.rmtree(src, ignore_errors=True)
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta["loadavg_end"] = os.getloadavg()
    print(f"## aiosig benchmarks ({'quick' if args.quick else 'full'} run)\n")
    v = meta["versions"]
    print(
        f"{meta['cpu']}, {meta['cores']} cores, Linux {meta['kernel']}, Python {v['python']}, "
        f"uvloop {v['uvloop']}, anyio {v['anyio']}, trio {v['trio']}, aiosig "
        f"{meta['aiosig_commit']}; {meta['seconds']} s; load average "
        f"{meta['loadavg_start'][0]:.2f} -> {meta['loadavg_end'][0]:.2f}\n"
    )
    print(report(results, params, only))
    if args.charts:
        from _charts import draw

        for path in draw(results, params, Path(args.charts)):
            print(f"chart: {path}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"meta": meta, "params": params, "results": results}, indent=1, default=str)
        )
    if any(not r.get("ok") for r in results):
        sys.exit(1)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("interrupted")
