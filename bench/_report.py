"""The report: results grouped over rounds, and one Markdown table per scenario.

A cell is the median over rounds, with the range of the per-round values in parentheses.
Mechanisms that run on one loop only (no loop at all, or trio's) fill both loop columns.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import _fanout
import _idle
import _imports
import _latency
import _memory
import _throughput
from _common import median


def group(results: list[dict[str, Any]]) -> dict[tuple[str, str, str, int], list[dict[str, Any]]]:
    """Successful results by (scenario, mechanism, loop, n)."""
    out: dict[tuple[str, str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if r.get("ok"):
            n = r["n"] if r["scenario"] in ("memory", "fanout") else 0
            out[(r["scenario"], r["mech"], r["loop"], n)].append(r["data"])
    return out


def stat(rows: list[dict[str, Any]], key: str) -> tuple[float, float, float]:
    """Median, min and max of `key` over rounds."""
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    if not values:
        return (float("nan"),) * 3  # type: ignore[return-value]
    return median(values), min(values), max(values)


def fmt(value: float, digits: int = 1) -> str:
    return "—" if value != value else f"{value:,.{digits}f}"


def spread(s: tuple[float, float, float], digits: int = 1) -> str:
    med, lo, hi = s
    if med != med:
        return "—"
    if lo == hi:
        return fmt(med, digits)
    return f"{fmt(med, digits)} ({fmt(lo, digits)}-{fmt(hi, digits)})"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell_loops(mech_loops: tuple[str, ...]) -> list[str]:
    """The loop whose result fills the asyncio and uvloop columns of a row."""
    if mech_loops in (("none",), ("trio",)):
        return [mech_loops[0]] * 2
    return ["asyncio", "uvloop"]


def _label(mech: str, loops: tuple[str, ...]) -> str:
    if loops == ("none",):
        return f"{mech} (no loop, both columns)"
    if loops == ("trio",):
        return f"{mech} (trio's own loop, both columns)"
    return mech


def table_latency(g: dict) -> str:
    header = ["mechanism"]
    for loop in ("asyncio", "uvloop"):
        header += [f"{loop} median µs (range)", "p99 µs", "x baseline"]
    rows = []
    base = {
        loop: stat(g.get(("latency", "loop.add_signal_handler (baseline)", loop, 0), []),
                   "median_us")[0]
        for loop in ("asyncio", "uvloop")
    }  # fmt: skip
    for mech, loops in _latency.MECHANISMS.items():
        row = [_label(mech, loops)]
        for col, loop in zip(("asyncio", "uvloop"), _cell_loops(loops), strict=True):
            data = g.get(("latency", mech, loop, 0), [])
            med = stat(data, "median_us")
            ratio = med[0] / base[col] if base[col] == base[col] else float("nan")
            row += [spread(med), fmt(stat(data, "p99_us")[0]), fmt(ratio, 2)]
        rows.append(row)
    return markdown(header, rows)


def table_throughput(g: dict) -> str:
    header = ["mechanism"]
    for loop in ("asyncio", "uvloop"):
        header += [f"{loop} k deliveries/s (range)", "counted / sent"]
    rows = []
    for mech, loops in _throughput.MECHANISMS.items():
        row = [_label(mech, loops)]
        if mech in _throughput.MAX_N:
            row[0] += f" ({_throughput.MAX_N[mech]:,} sent)"
        for loop in _cell_loops(loops):
            data = g.get(("throughput", mech, loop, 0), [])
            rate = tuple(v / 1000 for v in stat(data, "per_s"))
            ratio = stat(data, "ratio")
            row += [spread(rate), spread(ratio, 3)]  # type: ignore[arg-type]
        rows.append(row)
    return markdown(header, rows)


def table_memory(g: dict, ns: tuple[int, ...]) -> str:
    header = ["subscriptions to one signal", "N", "bytes each (asyncio)", "bytes each (uvloop)",
              "first one, bytes", "create µs each", "close µs each", "RSS growth KiB"]  # fmt: skip
    rows = []
    for mech in _memory.MECHANISMS:
        for n in ns:
            a = g.get(("memory", mech, "asyncio", n), [])
            u = g.get(("memory", mech, "uvloop", n), [])
            if not a and not u:
                continue
            rows.append([
                mech, f"{n:,}", fmt(stat(a, "per_object_bytes")[0], 0),
                fmt(stat(u, "per_object_bytes")[0], 0), fmt(stat(a, "first_bytes")[0], 0),
                spread(stat(a + u, "create_us")), spread(stat(a + u, "close_us")),
                fmt(stat(a, "rss_bytes")[0] / 1024, 0),
            ])  # fmt: skip
    return markdown(header, rows)


def table_fullbuffer(g: dict, n: int) -> str:
    header = [f"{n:,}-entry buffer, full", "loop", "KiB", "bytes per entry", "received / sent",
              "overflowed", "extra left in the kernel"]  # fmt: skip
    rows = []
    for mech, loops in _memory.FULL.items():
        for loop in loops:
            for d in g.get(("fullbuffer", mech, loop, 0), []):
                rows.append([
                    mech, loop, fmt(d["bytes"] / 1024, 0), fmt(d["bytes"] / d["entries"], 1),
                    f"{d['received']:,} / {d['sent']:,}", str(d.get("overflowed", "—")),
                    str(d.get("pending_in_kernel", "—")),
                ])  # fmt: skip
    return markdown(header, rows)


def table_idle(g: dict, many: int) -> str:
    header = ["installed, idle", "asyncio ns/iteration (range)", "Δ", "uvloop ns/iteration (range)",
              "Δ"]  # fmt: skip
    base = {loop: stat(g.get(("idle", "nothing installed", loop, 0), []), "ns_per_iteration")[0]
            for loop in ("asyncio", "uvloop")}  # fmt: skip
    rows = []
    for mech in _idle.IDLE:
        row = [mech.replace(" x N", f" x {many:,}")]
        for loop in ("asyncio", "uvloop"):
            s = stat(g.get(("idle", mech, loop, 0), []), "ns_per_iteration")
            row += [spread(s, 0), f"{s[0] - base[loop]:+,.0f}" if s[0] == s[0] else "—"]
        rows.append(row)
    return markdown(header, rows)


def table_calls(g: dict) -> str:
    header = ["one call", "asyncio µs (range)", "uvloop µs (range)"]
    rows = []
    for mech, loops in _idle.CALLS.items():
        row = [_label(mech, loops)]
        for loop in _cell_loops(loops):
            row.append(spread(stat(g.get(("calls", mech, loop, 0), []), "us_per_call")))
        rows.append(row)
    return markdown(header, rows)


def table_fanout(g: dict, ns: tuple[int, ...]) -> str:
    header = ["subscribers of one signal", "N"]
    for loop in ("asyncio", "uvloop"):
        header += [f"{loop} median µs (range)", "p99 µs", "x N=1"]
    rows = []
    for mech in _fanout.MECHANISMS:
        one = {
            loop: stat(g.get(("fanout", mech, loop, ns[0]), []), "median_us")[0]
            for loop in ("asyncio", "uvloop")
        }
        for n in ns:
            row = [mech.replace(" x N", "").replace(" N ", f" {n:,} "), f"{n:,}"]
            for loop in ("asyncio", "uvloop"):
                data = g.get(("fanout", mech, loop, n), [])
                med = stat(data, "median_us")
                row += [spread(med), fmt(stat(data, "p99_us")[0]), fmt(med[0] / one[loop], 2)]
            rows.append(row)
    return markdown(header, rows)


def table_imports(g: dict) -> str:
    header = ["", "median ms"]
    rows = []
    for mech in _imports.MECHANISMS:
        data = g.get(("imports", mech, "none", 0), [])
        rows += [
            ["python -c 'import asyncio' (fresh interpreter)", fmt(stat(data, "asyncio_ms")[0])],
            ["python -c 'import asyncio, aiosig'", fmt(stat(data, "with_aiosig_ms")[0])],
            ["difference: what importing aiosig costs", fmt(stat(data, "delta_ms")[0])],
            ["-X importtime: aiosig's own subtree", fmt(stat(data, "importtime_ms")[0])],
        ]
    return markdown(header, rows)


def report(results: list[dict[str, Any]], params: dict[str, Any], only: set[str]) -> str:
    """The Markdown tables of every scenario in `only`, then the problems found."""
    g = group(results)
    parts = []
    sections = [
        ("latency", f"Latency: one round trip, {params['latency_n']:,} per round",
         lambda: table_latency(g)),
        ("throughput", f"Throughput: {params['throughput_n']:,} SIGRTMIN, sigqueue",
         lambda: table_throughput(g)),
        ("memory", "Memory per subscription", lambda: table_memory(g, params["memory_n"])),
        ("fullbuffer", "Memory of a full receiver buffer",
         lambda: table_fullbuffer(g, params["fullbuffer_n"])),
        ("idle", f"Idle cost: one loop iteration, {params['idle_n']:,} per repeat",
         lambda: table_idle(g, params["idle_many"])),
        ("calls", "Cost of one call", lambda: table_calls(g)),
        ("fanout", f"Fan-out: one round trip to N subscribers, {params['fanout_trips']:,} per "
         "round", lambda: table_fanout(g, params["fanout_n"])),
        ("imports", "Import time", lambda: table_imports(g)),
    ]  # fmt: skip
    for name, title, make in sections:
        if name in only:
            load = [r["background_cpu"] for r in results if r["scenario"] == name and r.get("ok")]
            if load:
                title += (
                    f" (background CPU: median {median(load):.0%}, "
                    f"max {max(load):.0%} of the machine)"
                )
            parts.append(f"### {title}\n\n{make()}\n")
    problems, notes = set(), set()
    for r in results:
        where = f"- {r['scenario']} / {r['mech']} / {r['loop']}: "
        if not r.get("ok"):
            problems.add(where + str(r.get("error")))
        elif "precise" in r["mech"] and r["data"].get("precise_fraction", 1.0) < 1.0:
            fraction = r["data"]["precise_fraction"]
            problems.add(where + f"only {fraction:.1%} of the deliveries were precise")
        if r.get("ok") and r.get("state"):
            # asyncio's remove_signal_handler sets SIG_DFL, whatever was there before.
            (problems if "aiosig" in r["mech"] else notes).add(
                where + "signal state: " + "; ".join(r["state"])
            )
    if problems:
        parts.append("### Problems\n\n" + "\n".join(sorted(problems)) + "\n")
    if notes:
        parts.append("### Notes (not aiosig)\n\n" + "\n".join(sorted(notes)) + "\n")
    return "\n".join(parts)
