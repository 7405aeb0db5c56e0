"""aiosig.core is the stdlib's signal module, plus coherence with the hub.

Idle hub: every name, signature, result and error is the stdlib's. While the hub holds a
signal or the wakeup fd: the same errors (validated without calling the stdlib), and the user
sees the handler and the wakeup fd they set, not the hub's.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

import aiosig.core as core
from aiosig._hub import get_hub
from aiosig._siginfo import SigInfo
from tests.conftest import LoopFactory

REPLACED = ("alarm", "getitimer", "getsignal", "set_wakeup_fd", "setitimer", "signal")


def public_names(module: object) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")}


def handler(signum: int, frame: FrameType | None) -> None:
    """A Python-level handler that does nothing."""


class BadBool:
    def __bool__(self) -> bool:
        raise ZeroDivisionError("bool() of BadBool")


class BadInt:
    def __int__(self) -> int:
        raise ArithmeticError("int() of BadInt")


def outcome(call: Callable[[], object]) -> tuple[str, Any]:
    """``("returned", value)`` or ``("raised", (type, args))``: comparable across modules."""
    try:
        return ("returned", call())
    except Exception as exc:
        return ("raised", (type(exc), exc.args))


def in_thread(call: Callable[[], object]) -> tuple[str, Any]:
    """`outcome` of `call` run in a new (non-main) thread."""
    result: list[tuple[str, Any]] = []
    thread = threading.Thread(target=lambda: result.append(outcome(call)))
    thread.start()
    thread.join(10)
    assert result, "the thread did not finish"
    return result[0]


@pytest.fixture
def fds() -> Iterator[dict[str, int]]:
    """A closed fd number, a blocking pipe end and a non-blocking one."""
    r, blocking = os.pipe()
    r2, nonblocking = os.pipe()
    os.set_blocking(nonblocking, False)
    closed_r, closed = os.pipe()
    os.close(closed_r)
    os.close(closed)
    yield {"closed": closed, "blocking": blocking, "nonblocking": nonblocking}
    for fd in (r, blocking, r2, nonblocking):
        os.close(fd)


# ---- names and signatures -----------------------------------------------------------------


def test_core_has_every_public_name_of_signal_and_nothing_else() -> None:
    assert public_names(core) == public_names(signal)
    assert sorted(core.__all__) == sorted(public_names(signal))


def test_core_names_are_the_stdlib_objects_except_the_replaced_functions() -> None:
    for name in public_names(signal) - set(REPLACED):
        assert getattr(core, name) is getattr(signal, name), name
    for name in REPLACED:
        assert getattr(core, name) is not getattr(signal, name), name


def _unannotated(sig: inspect.Signature) -> inspect.Signature:
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    return sig.replace(parameters=params, return_annotation=inspect.Signature.empty)


@pytest.mark.parametrize("name", ["signal", "getsignal"])
def test_replaced_python_functions_have_the_stdlib_signature(name: str) -> None:
    ours = _unannotated(inspect.signature(getattr(core, name)))
    assert ours == inspect.signature(getattr(signal, name))


def test_set_wakeup_fd_has_the_stdlib_signature() -> None:
    try:
        expected = inspect.signature(signal.set_wakeup_fd)
    except ValueError:
        # 3.11's C function has no text signature; its docstring says
        # "set_wakeup_fd(fd, *, warn_on_full_buffer=True)" and its argument parser makes fd
        # positional-only.
        def documented(fd, /, *, warn_on_full_buffer=True): ...  # type: ignore[no-untyped-def]

        expected = inspect.signature(documented)
    assert _unannotated(inspect.signature(core.set_wakeup_fd)) == expected


@pytest.mark.parametrize("name", REPLACED)
def test_replaced_functions_carry_the_stdlib_docstring_and_name(name: str) -> None:
    ours, theirs = getattr(core, name), getattr(signal, name)
    assert ours.__doc__ == theirs.__doc__
    assert ours.__name__ == theirs.__name__
    assert ours.__module__ == "aiosig.core"


# ---- errors -------------------------------------------------------------------------------

SIGUSR1 = signal.SIGUSR1
SIGUSR2 = signal.SIGUSR2

# (function name, positional args, keyword args): each must make the stdlib raise, before it
# changes anything. Names in args are looked up in the `fds` fixture.
BAD_CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("signal", (4242, handler), {}),
    ("signal", (0, handler), {}),
    ("signal", (-1, handler), {}),
    ("signal", (signal.NSIG, handler), {}),
    ("signal", ("x", handler), {}),
    ("signal", (None, handler), {}),
    ("signal", (object(), handler), {}),
    ("signal", (2**40, handler), {}),
    ("signal", (-(2**40), handler), {}),
    ("signal", (2**70, handler), {}),
    ("signal", (BadInt(), handler), {}),
    ("signal", (SIGUSR1, None), {}),
    ("signal", (SIGUSR1, 2), {}),
    ("signal", (SIGUSR1, -1), {}),
    ("signal", (SIGUSR1, "x"), {}),
    ("signal", (SIGUSR1, object()), {}),
    ("signal", (SIGUSR1, float("inf")), {}),
    ("signal", (SIGUSR1, BadInt()), {}),
    ("signal", (signal.SIGKILL, handler), {}),
    ("signal", (signal.SIGSTOP, signal.SIG_IGN), {}),
    ("signal", (4242, None), {}),
    ("signal", ("x", None), {}),
    ("getsignal", (4242,), {}),
    ("getsignal", (0,), {}),
    ("getsignal", ("10",), {}),
    ("getsignal", (10.0,), {}),
    ("getsignal", (None,), {}),
    ("getsignal", (2**40,), {}),
    ("set_wakeup_fd", ("closed",), {}),
    ("set_wakeup_fd", ("blocking",), {}),
    ("set_wakeup_fd", (-2,), {}),
    ("set_wakeup_fd", ("x",), {}),
    ("set_wakeup_fd", (1.0,), {}),
    ("set_wakeup_fd", (None,), {}),
    ("set_wakeup_fd", (2**40,), {}),
    ("set_wakeup_fd", (-(2**40),), {}),
    ("set_wakeup_fd", (2**70,), {}),
    ("set_wakeup_fd", (-1,), {"warn_on_full_buffer": BadBool()}),
    ("set_wakeup_fd", ("x",), {"warn_on_full_buffer": BadBool()}),
    ("set_wakeup_fd", ("closed",), {"warn_on_full_buffer": False}),
]
# Only in a thread other than the main one (the main thread would succeed).
BAD_IN_THREAD_ONLY: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("signal", (SIGUSR1, handler), {}),
    ("signal", (SIGUSR1, signal.SIG_DFL), {}),
    ("set_wakeup_fd", (-1,), {}),
    ("set_wakeup_fd", ("nonblocking",), {"warn_on_full_buffer": False}),
]


def _show(value: object) -> str:
    """A stable test id part: no memory addresses."""
    if isinstance(value, signal.Signals | signal.Handlers):
        return value.name
    if callable(value) or type(value).__repr__ is object.__repr__:
        return getattr(value, "__name__", type(value).__name__)
    return repr(value)


def _ids(calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> list[str]:
    return [
        f"{name}({', '.join([*map(_show, args), *(f'{k}={_show(v)}' for k, v in kw.items())])})"
        for name, args, kw in calls
    ]


def _bind(
    module: object, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], fds: dict[str, int]
) -> Callable[[], object]:
    real = tuple(fds.get(a, a) if isinstance(a, str) else a for a in args)
    function = getattr(module, name)
    return lambda: function(*real, **kwargs)


def _assert_same_error(
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    fds: dict[str, int],
    run: Callable[[Callable[[], object]], tuple[str, Any]],
) -> None:
    theirs = run(_bind(signal, name, args, kwargs, fds))
    assert theirs[0] == "raised", f"the stdlib accepted {name}{args}: fix the test"
    assert run(_bind(core, name, args, kwargs, fds)) == theirs


@pytest.mark.parametrize(("name", "args", "kwargs"), BAD_CALLS, ids=_ids(BAD_CALLS))
def test_bad_calls_raise_what_the_stdlib_raises(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], fds: dict[str, int]
) -> None:
    assert not get_hub().holds(SIGUSR1)
    _assert_same_error(name, args, kwargs, fds, outcome)


@pytest.mark.parametrize(
    ("name", "args", "kwargs"),
    BAD_CALLS + BAD_IN_THREAD_ONLY,
    ids=_ids(BAD_CALLS + BAD_IN_THREAD_ONLY),
)
def test_bad_calls_from_another_thread_raise_what_the_stdlib_raises(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], fds: dict[str, int]
) -> None:
    _assert_same_error(name, args, kwargs, fds, in_thread)


def test_set_wakeup_fd_takes_fd_by_position_only_and_the_flag_by_keyword_only() -> None:
    # The C function's argument parser words these messages differently from Python's own
    # ("takes at most 1 positional argument (2 given)"); the type is the same.
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {"fd": -1}),
        ((-1, False), {}),
        ((), {}),
        ((-1,), {"warn": False}),
    ]
    for args, kwargs in calls:
        for module in (signal, core):
            with pytest.raises(TypeError):
                module.set_wakeup_fd(*args, **kwargs)


# ---- results with an idle hub -------------------------------------------------------------

# Handlers as the stdlib's wrapper converts them: int() where it works.
ACTIONS: list[Any] = [
    handler,
    signal.SIG_IGN,
    signal.SIG_DFL,
    1,
    0,
    "1",
    1.0,
    True,
    signal.default_int_handler,
]


def _round_trip(module: Any) -> list[tuple[str, Any]]:
    """Set each action on SIGUSR1 (as a Signals member, an int, a string) and read it back."""
    results = []
    for signum in (SIGUSR1, int(SIGUSR1), str(int(SIGUSR1))):
        for action in ACTIONS:
            results.append(outcome(functools.partial(module.signal, signum, action)))
            results.append(outcome(functools.partial(module.getsignal, SIGUSR1)))
    return results


@pytest.fixture
def sigusr1_restored() -> Iterator[None]:
    previous = signal.getsignal(SIGUSR1)
    yield
    signal.signal(SIGUSR1, previous)


@pytest.mark.usefixtures("sigusr1_restored")
def test_signal_then_getsignal_round_trip_like_the_stdlib() -> None:
    assert not get_hub().holds(SIGUSR1)
    signal.signal(SIGUSR1, signal.SIG_DFL)
    expected = _round_trip(signal)
    signal.signal(SIGUSR1, signal.SIG_DFL)
    assert _round_trip(core) == expected
    assert expected[:4] == [
        ("returned", signal.Handlers.SIG_DFL),
        ("returned", handler),
        ("returned", handler),
        ("returned", signal.Handlers.SIG_IGN),
    ]


def test_getsignal_of_every_valid_signal_is_the_stdlib_one() -> None:
    for signum in signal.valid_signals():
        assert core.getsignal(signum) == signal.getsignal(signum), signum


def test_set_wakeup_fd_round_trip_like_the_stdlib(fds: dict[str, int]) -> None:
    fd = fds["nonblocking"]
    previous = core.set_wakeup_fd(fd, warn_on_full_buffer=False)
    try:
        assert signal.set_wakeup_fd(fd) == fd
        assert core.set_wakeup_fd(fd) == fd
    finally:
        assert core.set_wakeup_fd(previous) == fd


# ---- while the hub holds SIGUSR1 ----------------------------------------------------------


async def _until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


@pytest.fixture
def held(loop_factory: LoopFactory) -> Iterator[tuple[asyncio.AbstractEventLoop, list[SigInfo]]]:
    """While the test runs, a subscription holds SIGUSR1 (the hub owns the wakeup fd)."""
    previous = signal.signal(SIGUSR1, handler)
    loop = loop_factory()
    deliveries: list[SigInfo] = []
    subscription = get_hub().subscribe({SIGUSR1}, deliveries.append, loop=loop)
    try:
        assert get_hub().holds(SIGUSR1)
        assert get_hub().owns_wakeup_fd()
        yield loop, deliveries
    finally:
        subscription.close()
        loop.close()
        signal.signal(SIGUSR1, previous)


def test_getsignal_while_held_is_the_users_handler_not_the_trampoline(
    held: tuple[asyncio.AbstractEventLoop, list[SigInfo]],
) -> None:
    assert signal.getsignal(SIGUSR1) is not handler
    assert core.getsignal(SIGUSR1) is handler
    assert core.getsignal(int(SIGUSR1)) is handler


def test_signal_while_held_chains_the_new_handler_and_keeps_deliveries(
    held: tuple[asyncio.AbstractEventLoop, list[SigInfo]],
) -> None:
    loop, deliveries = held
    calls: list[int] = []

    def h2(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    trampoline = signal.getsignal(SIGUSR1)
    assert core.signal(SIGUSR1, h2) is handler
    assert core.getsignal(SIGUSR1) is h2
    assert signal.getsignal(SIGUSR1) is trampoline
    os.kill(os.getpid(), SIGUSR1)
    loop.run_until_complete(_until(lambda: deliveries and calls))
    assert [info.si_signo for info in deliveries] == [SIGUSR1]
    assert calls == [SIGUSR1]


def test_handler_set_while_held_is_installed_when_the_subscription_closes(
    loop_factory: LoopFactory, sigusr1_restored: None
) -> None:
    def h2(signum: int, frame: FrameType | None) -> None: ...

    signal.signal(SIGUSR1, handler)
    loop = loop_factory()
    try:
        subscription = get_hub().subscribe({SIGUSR1}, lambda info: None, loop=loop)
        try:
            assert core.signal(SIGUSR1, h2) is handler
        finally:
            subscription.close()
    finally:
        loop.close()
    assert signal.getsignal(SIGUSR1) is h2
    assert core.getsignal(SIGUSR1) is h2


@pytest.mark.usefixtures("held")
def test_round_trip_while_held_is_the_idle_stdlib_round_trip() -> None:
    expected_after = core.getsignal(SIGUSR1)
    core.signal(SIGUSR1, signal.SIG_DFL)
    results = _round_trip(core)
    core.signal(SIGUSR1, expected_after)
    assert get_hub().holds(SIGUSR1)

    previous = signal.signal(SIGUSR1, signal.SIG_DFL)  # the trampoline, put back below
    try:
        # No signal is sent during this test, so taking the trampoline out for a moment loses
        # nothing.
        expected = _round_trip(signal)
    finally:
        signal.signal(SIGUSR1, previous)
    assert results == expected


@pytest.mark.parametrize(("name", "args", "kwargs"), BAD_CALLS, ids=_ids(BAD_CALLS))
def test_bad_calls_while_held_raise_what_the_stdlib_raises(
    held: tuple[asyncio.AbstractEventLoop, list[SigInfo]],
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    fds: dict[str, int],
) -> None:
    # The stdlib rejects these before changing anything, so calling it with the hub's
    # trampoline installed is harmless.
    _assert_same_error(name, args, kwargs, fds, outcome)


@pytest.mark.parametrize(
    ("name", "args", "kwargs"),
    BAD_CALLS + BAD_IN_THREAD_ONLY,
    ids=_ids(BAD_CALLS + BAD_IN_THREAD_ONLY),
)
def test_bad_calls_from_another_thread_while_held_raise_what_the_stdlib_raises(
    held: tuple[asyncio.AbstractEventLoop, list[SigInfo]],
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    fds: dict[str, int],
) -> None:
    _assert_same_error(name, args, kwargs, fds, in_thread)


def test_set_wakeup_fd_while_held_chains_the_users_fd(
    held: tuple[asyncio.AbstractEventLoop, list[SigInfo]],
) -> None:
    # On uvloop the run takes the wakeup fd; the user's fd keeps hearing signals meanwhile
    # (the hub forwards to every live previous owner) and is the user's fd again after it.
    loop, deliveries = held
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    try:
        previous = core.set_wakeup_fd(w, warn_on_full_buffer=False)
        os.kill(os.getpid(), SIGUSR1)
        loop.run_until_complete(_until(lambda: deliveries))
        assert os.read(r, 16) == bytes([SIGUSR1])
        assert core.set_wakeup_fd(previous) == w
    finally:
        os.close(r)
        os.close(w)


def test_previous_wakeup_fd_hears_only_signals_it_would_hear_without_aiosig(
    held: tuple[asyncio.AbstractEventLoop, list[SigInfo]],
) -> None:
    # SIGUSR1 has the user's Python handler behind the trampoline: without aiosig, CPython
    # would write its byte, so the previous owner gets it. SIGUSR2 is held in front of
    # SIG_DFL: without aiosig no wakeup fd would hear of it (the process would die), so a
    # loop that owned the fd before (uvloop's run) is not woken up for nothing.
    loop, deliveries = held
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    subscription = get_hub().subscribe({SIGUSR2}, deliveries.append, loop=loop)
    try:
        previous = core.set_wakeup_fd(w, warn_on_full_buffer=False)
        os.kill(os.getpid(), SIGUSR2)
        loop.run_until_complete(_until(lambda: deliveries))
        os.kill(os.getpid(), SIGUSR1)
        loop.run_until_complete(_until(lambda: len(deliveries) == 2))
        assert [d.si_signo for d in deliveries] == [SIGUSR2, SIGUSR1]
        assert os.read(r, 16) == bytes([SIGUSR1])
        assert core.set_wakeup_fd(previous) == w
    finally:
        subscription.close()
        os.close(r)
        os.close(w)


def test_wakeup_fd_set_while_held_becomes_the_real_one_after_release(
    loop_factory: LoopFactory, fds: dict[str, int]
) -> None:
    fd = fds["nonblocking"]
    loop = loop_factory()
    try:
        subscription = get_hub().subscribe({SIGUSR1}, lambda info: None, loop=loop)
        try:
            previous = core.set_wakeup_fd(fd)
        finally:
            subscription.close()
    finally:
        loop.close()
    assert signal.set_wakeup_fd(previous) == fd
