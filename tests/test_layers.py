"""The layers of docs/design.md, enforced: a module imports only from its own layer or below.

Bottom to top: platform bindings and value types; the hub (which knows nothing about
coroutines or the layers above); the precise source, which subscribes through the hub; the
async layer; the service layer (aiosig.run's shutdown); the server adapters; the command
line (the package ``aiosig/_cli/``, one layer, and ``python -m aiosig``); the public modules
(the drop-in, one per server) and the public namespace.
A new private module must be placed here.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import aiosig

LAYERS: list[set[str]] = [
    {
        "_platform",
        "_siginfo",
        "_convert",
        "_sdnotify",
        "_signal_state",
        "_script",
        "_process_hooks",
    },
    {"_subscription", "_loops", "_dispositions", "_wakeup", "_reader", "_hub"},
    {"_precise", "_closing"},
    {
        "_logfiles",
        "_receiver",
        "_handlers",
        "_waits",
        "_itimers",
        "_timers",
        "_watchdog",
        "_spawn",
        "_deadline",
        "_ending",
        "_children",
        "_synthetic",
        "_pytest_plugin",
    },
    {"_shutdown", "_hooks", "_service", "_run"},
    {"_serving", "_uvicorn", "_hypercorn", "_aiohttp", "_gunicorn"},
    {"_cli", "__main__"},
    {"_dropin", "core", "uvicorn", "hypercorn", "aiohttp", "gunicorn"},
    {"__init__", "testing"},
]
ROOT = pathlib.Path(aiosig.__file__).parent


def _layer(module: str) -> int:
    for index, names in enumerate(LAYERS):
        if module in names:
            return index
    raise AssertionError(f"aiosig/{module}.py is in no layer: add it to tests/test_layers.py")


def _module(path: pathlib.Path) -> str:
    """The layer name of a file: its module, or its subpackage for a file inside one."""
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else path.stem


def _imported(path: pathlib.Path) -> set[str]:
    depth = len(path.relative_to(ROOT).parts)  # the relative level that reaches aiosig/
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if 0 < node.level < depth:
                found.add(_module(path))  # a sibling inside the same subpackage
            elif node.level == depth and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == depth:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("aiosig."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("aiosig."))
    return found


def test_every_module_imports_only_from_its_layer_or_below() -> None:
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        mine = _layer(_module(path))
        for name in _imported(path):
            if _layer(name) > mine:
                where = path.relative_to(ROOT)
                problems.append(f"{where} (layer {mine}) imports {name} (layer {_layer(name)})")
    assert not problems, "\n".join(problems)


def test_importing_aiosig_does_not_load_the_command_line() -> None:
    code = "import sys, aiosig, aiosig.core; print(sorted(m for m in sys.modules if 'cli' in m))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_the_hub_layer_knows_nothing_about_coroutines() -> None:
    for name in LAYERS[1]:
        source = (ROOT / f"{name}.py").read_text()
        assert "async def" not in source or name == "_loops", name  # _loops: the sentinel
        assert "create_task" not in source and "ensure_future" not in source, name
