"""Scenario 7: what ``import aiosig`` costs a program that imports asyncio anyway.

Fresh interpreters, alternately ``import asyncio`` and ``import asyncio, aiosig``, wall clock
from spawn to exit; the cost is the difference of the medians. The bytecode is compiled
first (``compileall``), as an installed package's is, so that neither side pays for
compiling. ``-X importtime``'s figure for aiosig's own subtree (asyncio already imported) is
reported beside it: less noisy, but it leaves out the interpreter's own work around imports.
"""

from __future__ import annotations

import compileall
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import median

MECHANISMS: dict[str, tuple[str, ...]] = {"import aiosig, after import asyncio": ("none",)}
NEEDS: dict[str, str] = {}


def _where(spec: dict[str, Any]) -> str:
    return spec.get("src") or str(Path(__file__).resolve().parent.parent)


def _wall_ms(code: str, env: dict[str, str], where: str) -> float:
    start = time.perf_counter()
    # In `where`: ``-c`` puts the working directory first on sys.path, ahead of PYTHONPATH,
    # and a run from the checkout would otherwise import the working tree, not --aiosig-rev.
    subprocess.run([sys.executable, "-c", code], env=env, cwd=where, check=True)
    return (time.perf_counter() - start) * 1000


def _importtime_us(env: dict[str, str], where: str) -> int:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import asyncio; import aiosig"],
        env=env, cwd=where, capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    for line in out.splitlines():
        if line.rstrip().endswith("| aiosig"):
            return int(line.split("|")[1])
    raise RuntimeError("no line for aiosig in -X importtime's output")


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the import case in this (fresh) worker."""
    where = _where(spec)
    compileall.compile_dir(os.path.join(where, "aiosig"), quiet=1)
    env = dict(os.environ, PYTHONPATH=where)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    base, withit, own = [], [], []
    for _ in range(spec["n"]):
        base.append(_wall_ms("import asyncio", env, where))
        withit.append(_wall_ms("import asyncio, aiosig", env, where))
        own.append(_importtime_us(env, where) / 1000)
    return {
        "asyncio_ms": median(base),
        "with_aiosig_ms": median(withit),
        "delta_ms": median(withit) - median(base),
        "importtime_ms": median(own),
    }
