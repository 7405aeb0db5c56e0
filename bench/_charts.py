"""Charts: one PNG per section (latency, throughput, fan-out), drawn from a run's results.

matplotlib is imported here only, so a run without ``--charts`` does not need it. Bars are
the medians over rounds; the whiskers span the lowest and highest per-round median, as the
ranges in the tables do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _fanout
import _latency
import _throughput
from _report import group, stat

LOOPS = ("asyncio", "uvloop")
COLOURS = {"asyncio": "#4c72b0", "uvloop": "#dd8452"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _loops_of(loops: tuple[str, ...]) -> list[str]:
    return [loops[0]] * 2 if loops in (("none",), ("trio",)) else list(LOOPS)


def _bars(
    g: dict[Any, Any],
    scenario: str,
    table: dict[str, tuple[str, ...]],
    key: str,
    scale: float,
    xlabel: str,
    title: str,
    path: Path,
) -> Path | None:
    rows = []
    for mech, loops in table.items():
        stats = [
            tuple(v * scale for v in stat(g.get((scenario, mech, loop, 0), []), key))
            for loop in _loops_of(loops)
        ]
        if any(s[0] == s[0] for s in stats):
            rows.append((mech, stats))
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.5))
    height = 0.38
    for i, loop in enumerate(LOOPS):
        ys = [n + (i - 0.5) * height for n in range(len(rows))]
        meds = [r[1][i][0] for r in rows]
        errs = [
            [max(0.0, r[1][i][0] - r[1][i][1]) for r in rows],
            [max(0.0, r[1][i][2] - r[1][i][0]) for r in rows],
        ]
        ax.barh(ys, meds, height, xerr=errs, label=loop, color=COLOURS[loop], capsize=2)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fanout_chart(g: dict[Any, Any], ns: tuple[int, ...], path: Path) -> Path | None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = False
    for mech in _fanout.MECHANISMS:
        for loop in LOOPS:
            points = [(n, stat(g.get(("fanout", mech, loop, n), []), "median_us")[0]) for n in ns]
            points = [(n, v) for n, v in points if v == v]
            if not points:
                continue
            drawn = True
            style = "-" if mech.startswith("aiosig") else "--"
            ax.plot(*zip(*points, strict=True), style, marker="o", color=COLOURS[loop],
                    label=f"{mech.replace(' x N', '')} ({loop})")  # fmt: skip
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("subscribers of one signal")
    ax.set_ylabel("round trip, median µs")
    ax.set_title("Fan-out: one delivery to N subscribers")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(results: list[dict[str, Any]], params: dict[str, Any], where: Path) -> list[Path]:
    """Draw every chart the results allow into `where`; return the files written."""
    where.mkdir(parents=True, exist_ok=True)
    g = group(results)
    made = [
        _bars(g, "latency", _latency.MECHANISMS, "median_us", 1.0, "round trip, median µs",
              "Delivery latency (lower is better)", where / "latency.png"),
        _bars(g, "throughput", _throughput.MECHANISMS, "per_s", 1e-3,
              "k deliveries counted per second", "Throughput under a flood (higher is better)",
              where / "throughput.png"),
        _fanout_chart(g, params["fanout_n"], where / "fanout.png"),
    ]  # fmt: skip
    return [p for p in made if p is not None]
