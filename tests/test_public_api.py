"""The public namespace re-exports, and ``__all__`` says exactly what it exports."""

from __future__ import annotations

import types

import aiosig


def test_all_is_a_tuple_of_unique_names() -> None:
    assert isinstance(aiosig.__all__, tuple)
    duplicates = sorted({name for name in aiosig.__all__ if aiosig.__all__.count(name) > 1})
    assert duplicates == []


def test_every_name_in_all_exists() -> None:
    missing = [name for name in aiosig.__all__ if not hasattr(aiosig, name)]
    assert missing == []


def test_every_public_attribute_that_is_not_a_submodule_is_in_all() -> None:
    public = {
        name
        for name, value in vars(aiosig).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(public - set(aiosig.__all__)) == []


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from aiosig import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(aiosig.__all__)
