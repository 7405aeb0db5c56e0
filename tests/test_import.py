"""``import aiosig`` loads its modules on first use; every public name still resolves.

Each check runs in a fresh interpreter: in this one, the plugin and the other tests have
loaded most of aiosig already. What an import costs is measured by bench/run.py, not here.
"""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys
from typing import Any

import aiosig

CHECKOUT = pathlib.Path(aiosig.__file__).parent.parent


def _fresh(code: str) -> Any:
    """Run `code` in a new interpreter, after ``import asyncio``; return what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", "import asyncio, json, sys\n" + code],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=CHECKOUT,
    )
    return json.loads(done.stdout)


LOADED_SINCE = """
before = set(sys.modules)
{action}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_importing_aiosig_loads_only_the_package_and_its_process_hooks() -> None:
    loaded = _fresh(LOADED_SINCE.format(action="import aiosig"))
    assert loaded == ["aiosig", "aiosig._process_hooks"]


def test_the_signal_handling_core_does_not_load_the_service_layer() -> None:
    action = "import aiosig\naiosig.add_handler, aiosig.open_signal_receiver, aiosig.SigInfo"
    loaded = _fresh(LOADED_SINCE.format(action=action))
    service = {"aiosig._run", "aiosig._shutdown", "aiosig._hooks", "aiosig._children"}
    assert service.isdisjoint(loaded), loaded
    assert {"aiosig._handlers", "aiosig._receiver", "aiosig._hub"} <= set(loaded)


def test_every_name_in_all_resolves_to_the_object_its_module_defines() -> None:
    code = """
import importlib
import aiosig
wrong = []
for name in aiosig.__all__:
    home = aiosig._HOME.get(name)
    value = getattr(aiosig, name)
    where = importlib.import_module(f"aiosig.{home}") if home else importlib.import_module("signal")
    if value is not getattr(where, name):
        wrong.append(name)
print(json.dumps(wrong))
"""
    assert _fresh(code) == []


def test_from_import_dir_and_star_import_see_every_name_before_first_use() -> None:
    code = """
import aiosig
listed = set(dir(aiosig))
from aiosig import run, shield, SigInfo
namespace = {}
exec("from aiosig import *", namespace)
starred = sorted(namespace.keys() - {"__builtins__"})
print(json.dumps([sorted(set(aiosig.__all__) - listed), starred]))
"""
    missing_from_dir, starred = _fresh(code)
    assert missing_from_dir == []
    assert starred == sorted(aiosig.__all__)


def test_an_unknown_name_raises_attribute_error_like_a_module() -> None:
    try:
        aiosig.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert str(exc) == "module 'aiosig' has no attribute 'no_such_name'"
    else:
        raise AssertionError("no AttributeError")


def test_the_lazy_table_names_what_the_type_checking_imports_name() -> None:
    tree = ast.parse((CHECKOUT / "aiosig" / "__init__.py").read_text())
    seen: dict[str, tuple[str, ...]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for imported in node.body:
                if isinstance(imported, ast.ImportFrom) and imported.module:
                    seen[imported.module] = tuple(alias.name for alias in imported.names)
    assert seen == aiosig._LAZY


FORK_AFTER_FIRST_USE = """
import os, signal
import aiosig
hub_was_reset = []
os.register_at_fork(
    after_in_child=lambda: hub_was_reset.append(sys.modules["aiosig._hub"]._hub is None)
)

async def main():
    handle = aiosig.add_handler(signal.SIGUSR1, lambda info: None)  # the hub loads here
    pid = os.fork()
    if pid == 0:
        print(json.dumps(hub_was_reset), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    handle.remove()

asyncio.run(main())
"""


def test_a_fork_hook_registered_after_import_sees_the_hub_already_reset_in_the_child() -> None:
    # The hub loads after the application registered its hook; its own still runs first.
    assert _fresh(FORK_AFTER_FIRST_USE) == [True]
