"""Bad input gets the stdlib's error, at the call, and changes nothing.

Where an aiosig function has a stdlib twin, hypothesis generates bad arguments (wrong types,
floats, NaN, infinities, huge and negative ints, strings, None, objects whose ``__index__`` or
``__int__`` misbehave, out-of-range signal numbers, sets with bad items) and the aiosig call
must raise exactly what the twin raises, type and message, or accept exactly what it accepts.
The twin is only ever called in a way that cannot change process state: with a second
argument that makes it fail whatever the first one is (``signal.signal(x, None)``,
``setitimer(which, x, -1)``), with a signal that is already pending (``sigtimedwait``), with
signal 0 (``os.kill``), or after a check that the call is bound to fail.

Functions without a twin must refuse bad input at the call with one sentence. Every example
must leave the dispositions, the wakeup fd, the mask, the pending signals, the hub's
subscriptions, the kernel's interval timers and the threads as it found them.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import math
import operator
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import aiosig
import aiosig.core as core
from aiosig._hub import get_hub
from tests import _signal_state
from tests.conftest import LOOP_FACTORIES, LoopFactory

TIMEOUT = 10.0
NSIG = signal.NSIG
VALID = frozenset(int(s) for s in signal.valid_signals())
MAIN = threading.main_thread().ident
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
TIMERS = (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF)
REFUSED_BY_AIOSIG = frozenset(
    {signal.SIGKILL, signal.SIGSTOP, signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL}
)
# What signal.signal(valid_number, None) raises: the number passed every check.
HANDLER_ERROR = (
    "raised",
    (TypeError, "signal handler must be signal.SIG_IGN, signal.SIG_DFL, or a callable object"),
)
ITIMER_EINVAL = ("raised", (signal.ItimerError, "[Errno 22] Invalid argument"))

# Reporting a failure, hypothesis imports libcst, which uses a deprecated mypy_extensions name.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

# Derandomized: the same examples every run, so CI's verdict changes only with a commit (as
# the pinned linters'). To explore further, drop derandomize (and raise max_examples) locally.
BOUNDED = settings(
    max_examples=120,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ---- what the tests generate ----------------------------------------------------------------


class IndexRaises:
    def __index__(self) -> int:
        raise OverflowError("__index__ of IndexRaises")


class IndexReturnsFloat:
    def __index__(self) -> float:
        return 1.5


class IndexOnly:
    def __index__(self) -> int:
        return int(signal.SIGUSR1)


class IntOnly:
    def __int__(self) -> int:
        return int(signal.SIGUSR1)


class IntRaises:
    def __int__(self) -> int:
        raise ArithmeticError("__int__ of IntRaises")


class BoolRaises:
    def __bool__(self) -> bool:
        raise ZeroDivisionError("__bool__ of BoolRaises")


class IterRaises:
    def __iter__(self) -> Iterator[int]:
        raise ZeroDivisionError("__iter__ of IterRaises")


class FloatSub(float):
    pass


class IntSub(int):
    pass


ODD: list[object] = [
    IndexRaises(),
    IndexReturnsFloat(),
    IndexOnly(),
    IntOnly(),
    IntRaises(),
    BoolRaises(),
    IterRaises(),
    object(),
    FloatSub(-1e-10),
    FloatSub(2.5),
    IntSub(10),
    signal.SIGUSR1,
    signal.Handlers.SIG_IGN,
]
BOUNDARY_INTS = [
    *(0, -1, 1, NSIG - 1, NSIG, 32, 33, 34),
    *(INT_MAX, INT_MAX + 1, INT_MIN, INT_MIN - 1, 2**32, 2**32 + 10),
    *(2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**400, -(10**400)),
    # the edges of _PyTime_t in whole seconds
    *(9223372036, 9223372037, -9223372036, -9223372037),
]
BOUNDARY_FLOATS = [
    *(0.0, -0.0, 1.5, 10.0, 10.5, -1.0, 1e-300, -1e-300, 1e300, -1e300),
    # rounded up to 0 ns or 0 µs: accepted by the stdlib, not negative
    *(-1e-10, -9.99e-7, -1e-6, -1.0000001e-6),
    # the edges of _PyTime_t in seconds
    *(9223372036.854775, 9223372036.854776, -9223372036.854775, -9223372036.854776),
    *(float("inf"), float("-inf"), float("nan")),
]

ints = st.one_of(
    st.sampled_from(BOUNDARY_INTS),
    st.integers(min_value=-5, max_value=NSIG + 5),
    st.integers(min_value=-(2**70), max_value=2**70),
)
floats = st.one_of(st.sampled_from(BOUNDARY_FLOATS), st.floats())
scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    floats,
    st.text(max_size=3),
    st.sampled_from(["10", " 12 ", "1e3", "nan", "-1"]),
    st.binary(max_size=2),
    st.decimals(allow_nan=True, places=2),
    st.fractions(max_denominator=10),
    st.complex_numbers(max_magnitude=100),
    st.sampled_from(ODD),
)
# Signal numbers as aiosig's entry points take them: bad ones, and every valid one.
signums = st.one_of(scalars, st.sampled_from(sorted(VALID)))
sig_items = st.one_of(
    st.integers(min_value=-3, max_value=NSIG + 3),
    st.sampled_from(sorted(REFUSED_BY_AIOSIG | {signal.SIGCHLD, 32, 33})),
    scalars,
)
# Never an iterator: the same object goes to the stdlib and to aiosig.
sigsets = st.one_of(
    st.lists(sig_items, max_size=4),
    st.lists(sig_items, max_size=4).map(tuple),
    st.frozensets(st.integers(min_value=-3, max_value=NSIG + 3), max_size=4),
    scalars,
)


def noop(*args: object) -> None:
    """A valid handler or callback."""


# ---- outcomes and process state -------------------------------------------------------------

Outcome = tuple[str, Any]


def outcome(call: Callable[[], object]) -> Outcome:
    """``("returned", value)`` or ``("raised", (type, message))``: comparable across modules."""
    try:
        return ("returned", call())
    except Exception as exc:
        return ("raised", (type(exc), str(exc)))


def one_sentence(got: Outcome) -> bool:
    message: str = got[1][1]
    return got[0] == "raised" and bool(message) and "\n" not in message and ". " not in message


def process_state() -> tuple[object, ...]:
    """Everything a refused call must leave alone (read between loop runs, in the main thread)."""
    hub = get_hub()
    return (
        _signal_state.snapshot(),
        frozenset(s for s in VALID if hub.holds(s)),
        tuple(signal.getitimer(which) != (0.0, 0.0) for which in TIMERS),
        signal.sigpending(),
    )


def new_threads(before: set[int | None]) -> set[int | None]:
    """Threads alive now that were not before (one that ended meanwhile is no concern: a
    closed uvloop loop's executor threads, say, end on their own time)."""
    return {t.ident for t in threading.enumerate()} - before


def as_index(value: object) -> int | None:
    """`value` as an int parameter takes it (``__index__``), or None if it cannot."""
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except Exception:
        return None


def signal_error(signum: object) -> Outcome | None:
    """What ``signal.signal`` raises for `signum` itself, or None if it is a valid number.

    None is never a valid handler, so the probe cannot install anything.
    """
    probe = outcome(lambda: signal.signal(signum, None))  # type: ignore[arg-type]
    return None if probe == HANDLER_ERROR else probe


def stdlib_number(signum: object) -> int:
    """A valid `signum` as ``signal.signal`` reads it (its wrapper applies int() first)."""
    return int(signum)  # type: ignore[call-overload]


def refused_by_aiosig(signum: object, loop: asyncio.AbstractEventLoop) -> bool:
    number = stdlib_number(signum)
    uvloop = type(loop).__module__.startswith("uvloop")
    if number in REFUSED_BY_AIOSIG or (uvloop and number == signal.SIGCHLD):
        return True
    # A handler installed outside Python (glibc's internal 32 and 33): aiosig could not put
    # it back, so it refuses the signal.
    try:
        return signal.getsignal(number) is None  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False


@pytest.fixture
def loop(loop_factory: LoopFactory) -> Iterator[asyncio.AbstractEventLoop]:
    loop = loop_factory()
    try:
        yield loop
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def run(loop: asyncio.AbstractEventLoop, make: Callable[[], Awaitable[Outcome]]) -> Outcome:
    """Run one attempt on `loop`, and check that it left the process as it found it."""
    before = process_state()
    threads = {t.ident for t in threading.enumerate()}

    async def bounded() -> Outcome:
        async with asyncio.timeout(TIMEOUT):
            return await make()

    got = loop.run_until_complete(bounded())
    assert process_state() == before, got
    assert not new_threads(threads), got
    return got


# ---- aiosig.core: signal, getsignal, set_wakeup_fd, alarm, setitimer, getitimer -------------


async def pending_alarm() -> asyncio.Future[aiosig.SigInfo]:
    return aiosig.alarm(3600)


@pytest.fixture(params=["idle", "held-asyncio", "held-uvloop"])
def situation(request: pytest.FixtureRequest) -> Iterator[str]:
    """The hub idle, or holding SIGUSR1, the wakeup fd and (through an alarm) ITIMER_REAL."""
    if request.param == "idle":
        yield request.param
        return
    loop = LOOP_FACTORIES[request.param.removeprefix("held-")]()
    previous = signal.signal(signal.SIGUSR1, noop)
    subscription = get_hub().subscribe({signal.SIGUSR1}, noop, loop=loop)
    alarm = loop.run_until_complete(pending_alarm())
    try:
        assert get_hub().holds(signal.SIGUSR1) and get_hub().owns_wakeup_fd()
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 0
        yield request.param
    finally:
        alarm.cancel()
        subscription.close()
        loop.close()
        signal.signal(signal.SIGUSR1, previous)


def same_as_stdlib(name: str, *args: object, **kwargs: object) -> Outcome:
    """Call the stdlib function and aiosig.core's; assert the same outcome and no change."""
    before = process_state()
    expected = outcome(lambda: getattr(signal, name)(*args, **kwargs))
    got = outcome(lambda: getattr(core, name)(*args, **kwargs))
    assert got == expected
    assert process_state() == before
    return got


def installs(handler: object) -> bool:
    """Whether ``signal.signal`` would install `handler` (its wrapper applies int() first)."""
    if callable(handler):
        return True
    try:
        return int(handler) in (0, 1)  # type: ignore[call-overload]
    except Exception:
        return False


bad_handlers = scalars.filter(lambda h: not installs(h))
good_handlers = st.sampled_from([noop, signal.SIG_IGN, signal.SIG_DFL, 0, 1, "1", 1.5, True])


@BOUNDED
@given(
    signalnum=st.one_of(signums, st.sampled_from(["10", 10.0, 10.9, IntOnly(), IndexOnly()])),
    handler=bad_handlers,
)
def test_core_signal_refuses_bad_handlers_like_the_stdlib(
    situation: str, signalnum: object, handler: object
) -> None:
    # A handler the stdlib does not install: it refuses the call whatever the number is.
    assert same_as_stdlib("signal", signalnum, handler)[0] == "raised"


@BOUNDED
@given(signalnum=signums, handler=good_handlers)
def test_core_signal_refuses_bad_signal_numbers_like_the_stdlib(
    situation: str, signalnum: object, handler: object
) -> None:
    error = signal_error(signalnum)
    # A valid number would be installed, unless the kernel refuses it (SIGKILL, SIGSTOP).
    assume(error is not None or stdlib_number(signalnum) in (signal.SIGKILL, signal.SIGSTOP))
    assert same_as_stdlib("signal", signalnum, handler)[0] == "raised"


@BOUNDED
@given(signalnum=signums)
def test_core_getsignal_refuses_what_the_stdlib_refuses(situation: str, signalnum: object) -> None:
    before = process_state()
    expected = outcome(lambda: signal.getsignal(signalnum))  # type: ignore[arg-type]
    got = outcome(lambda: core.getsignal(signalnum))  # type: ignore[arg-type]
    if expected[0] == "raised":
        assert got == expected
    else:
        # While the hub holds the signal, core reports the user's handler, not the trampoline.
        assert got[0] == "returned"
    assert process_state() == before


@pytest.fixture
def bad_fds() -> Iterator[dict[str, int]]:
    """A closed fd number and a blocking pipe end: both refused by set_wakeup_fd."""
    r, blocking = os.pipe()
    closed_r, closed = os.pipe()
    os.close(closed_r)
    os.close(closed)
    yield {"closed": closed, "blocking": blocking}
    os.close(r)
    os.close(blocking)


def sets_wakeup_fd(fd: object, warn: object) -> bool:
    """Whether ``set_wakeup_fd(fd, warn_on_full_buffer=warn)`` would succeed (and act)."""
    number = as_index(fd)
    if (
        number is None
        or not INT_MIN <= number <= INT_MAX
        or outcome(lambda: bool(warn))[0] != "returned"
    ):
        return False
    if number == -1:
        return True
    try:
        return not os.get_blocking(number)
    except OSError:
        return False


@BOUNDED
@given(
    fd=st.one_of(scalars, st.sampled_from(["closed", "blocking"])),
    warn=st.one_of(st.booleans(), scalars),
)
def test_core_set_wakeup_fd_refuses_what_the_stdlib_refuses(
    situation: str, bad_fds: dict[str, int], fd: object, warn: object
) -> None:
    fd = bad_fds.get(fd, fd) if isinstance(fd, str) else fd
    assume(not sets_wakeup_fd(fd, warn))
    assert same_as_stdlib("set_wakeup_fd", fd, warn_on_full_buffer=warn)[0] == "raised"


@BOUNDED
@given(seconds=scalars)
def test_core_alarm_refuses_what_the_stdlib_refuses(situation: str, seconds: object) -> None:
    number = as_index(seconds)
    assume(number is None or not INT_MIN <= number <= INT_MAX)  # a C int would arm the alarm
    assert same_as_stdlib("alarm", seconds)[0] == "raised"


whichs = st.one_of(st.sampled_from(TIMERS), scalars)
times = st.one_of(scalars, st.floats(min_value=-2.0, max_value=2.0))


@BOUNDED
@given(which=whichs, seconds=times, interval=times)
def test_core_setitimer_refuses_what_the_stdlib_refuses(
    situation: str, which: object, seconds: object, interval: object
) -> None:
    # -1 makes the kernel refuse whatever else converts, so the stdlib never arms anything.
    assert same_as_stdlib("setitimer", which, seconds, -1)[0] == "raised"
    assert same_as_stdlib("setitimer", which, -1, interval)[0] == "raised"


@BOUNDED
@given(which=whichs)
def test_core_getitimer_refuses_what_the_stdlib_refuses(situation: str, which: object) -> None:
    before = process_state()
    expected = outcome(lambda: signal.getitimer(which))  # type: ignore[arg-type]
    got = outcome(lambda: core.getitimer(which))  # type: ignore[arg-type]
    if expected[0] == "raised":
        assert got == expected
    else:
        # While aiosig's timers share ITIMER_REAL, core reports the user's (virtual) timer.
        assert got[0] == "returned"
    assert process_state() == before


# ---- the awaitable waits ----------------------------------------------------------------------


async def settle(task: asyncio.Future[Any]) -> Outcome:
    try:
        return ("returned", await task)
    except Exception as exc:
        return ("raised", (type(exc), str(exc)))


async def attempt(call: Callable[[], object], forever: bool = False) -> Outcome:
    """Call, then await what the call returned: fully, or a few steps if it waits `forever`."""
    try:
        awaitable = call()
    except Exception as exc:
        return ("raised", (type(exc), str(exc)))
    task = asyncio.ensure_future(awaitable)  # type: ignore[arg-type]
    if forever:
        for _ in range(3):
            await asyncio.sleep(0)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return ("waiting", None)
    return await settle(task)


@BOUNDED
@given(sigset=sigsets)
@example(sigset={signal.SIGKILL})
@example(sigset={signal.SIGSEGV})
@example(sigset={signal.SIGCHLD})
@example(sigset=[signal.SIGSTOP, signal.SIGUSR1])
@example(sigset=[33, signal.SIGUSR1])
@example(sigset=[2**64])
@example(sigset=IterRaises())
def test_waits_accept_and_refuse_the_sigsets_the_stdlib_does(
    loop: asyncio.AbstractEventLoop, sigset: object
) -> None:
    assert not signal.sigpending()  # so that the stdlib's sigtimedwait(sigset, 0) returns at once
    expected = outcome(lambda: signal.sigtimedwait(sigset, 0))  # type: ignore[arg-type]
    assert expected in (("returned", None), *([expected] if expected[0] == "raised" else []))
    for name in ("sigwait", "sigwaitinfo", "sigtimedwait"):
        args = (sigset, 0) if name == "sigtimedwait" else (sigset,)
        call = functools.partial(getattr(aiosig, name), *args)
        got = run(loop, functools.partial(attempt, call, forever=name != "sigtimedwait"))
        if expected[0] == "raised":
            assert got == expected, name
        else:
            assert got == (("returned", None) if name == "sigtimedwait" else ("waiting", None)), (
                name
            )


@BOUNDED
@given(timeout=times)
@example(timeout=-1e-10)
@example(timeout=10**400)
@example(timeout=-(10**400))
@example(timeout=float("nan"))
@example(timeout=FloatSub(-1e-10))
@example(timeout=IndexRaises())
def test_sigtimedwait_accepts_and_refuses_the_timeouts_the_stdlib_does(
    loop: asyncio.AbstractEventLoop, timeout: object
) -> None:
    usr2 = signal.SIGUSR2
    with aiosig.block(usr2):
        # Pending: the stdlib returns at once for any timeout it accepts (and takes the signal).
        signal.pthread_kill(MAIN, usr2)
        expected = outcome(lambda: signal.sigtimedwait([usr2], timeout))  # type: ignore[arg-type]
        if expected[0] == "returned":
            signal.pthread_kill(MAIN, usr2)
        got = loop.run_until_complete(attempt(lambda: aiosig.sigtimedwait([usr2], timeout)))  # type: ignore[arg-type]
        leftover = signal.sigtimedwait([usr2], 0)
    if expected[0] == "raised":
        assert got == expected
        assert leftover is not None
    else:
        assert got[0] == "returned" and got[1].si_signo == usr2
        assert leftover is None


# ---- sigqueue: os.kill's pid, pthread_kill's signal number ------------------------------------


@BOUNDED
@given(pid=scalars)
@example(pid=2**70)
def test_sigqueue_converts_the_pid_as_os_kill_does(pid: object) -> None:
    before = process_state()
    expected = outcome(lambda: os.kill(pid, 0))  # type: ignore[arg-type]  # 0: nothing is sent
    got = outcome(lambda: aiosig.sigqueue(pid, 0))  # type: ignore[arg-type]
    if expected[0] == "raised" and not issubclass(expected[1][0], OSError):
        assert got == expected
    else:
        # A pid that converts: which process exists is the kernel's business (sigqueue(0)
        # is ESRCH where kill(0) means the process group).
        assert got[0] == "returned" or issubclass(got[1][0], OSError)
    assert process_state() == before


@BOUNDED
@given(sig=scalars)
def test_sigqueue_converts_the_signal_as_pthread_kill_does(sig: object) -> None:
    number = as_index(sig)
    assume(number is None or not 1 <= number < NSIG)  # a real signal number would be sent
    before = process_state()
    expected = outcome(lambda: signal.pthread_kill(MAIN, sig))  # type: ignore[arg-type]
    assert outcome(lambda: aiosig.sigqueue(os.getpid(), sig)) == expected  # type: ignore[arg-type]
    assert process_state() == before


@BOUNDED
@given(value=scalars)
def test_sigqueue_converts_the_value_as_a_c_int(value: object) -> None:
    # strsignal takes an Argument Clinic int too; it refuses numbers that are no signal with
    # ValueError, which only means the conversion went through.
    expected = outcome(lambda: signal.strsignal(value))  # type: ignore[arg-type]
    got = outcome(lambda: aiosig.sigqueue(os.getpid(), 0, value))  # type: ignore[arg-type]
    if expected[0] == "raised" and expected[1][0] is not ValueError:
        assert got == expected
    else:
        assert got == ("returned", None)


# ---- no twin: receivers, handlers, alarm futures, interval timers, the watchdog ---------------


def expected_subscription_error(
    signals: list[object], loop: asyncio.AbstractEventLoop
) -> Outcome | None:
    """The stdlib's error for the first bad signal, or "aiosig" if aiosig refuses one."""
    for signum in signals:
        error = signal_error(signum)
        if error is not None:
            return error
        if refused_by_aiosig(signum, loop):
            return ("aiosig", None)
    return None


def check_refusal(got: Outcome, expected: Outcome) -> None:
    if expected[0] == "aiosig":
        assert got[0] == "raised" and one_sentence(got), got
    else:
        assert got == expected


async def open_and_close_receiver(signals: list[object], maxsize: object) -> Outcome:
    try:
        receiver = aiosig.open_signal_receiver(*signals, maxsize=maxsize)  # type: ignore[arg-type]
    except Exception as exc:
        return ("raised", (type(exc), str(exc)))
    await receiver.aclose()
    return ("returned", None)


@BOUNDED
@given(
    signals=st.lists(signums, max_size=3),
    maxsize=st.one_of(scalars, st.integers(min_value=-2, max_value=3)),
)
@example(signals=[signal.SIGUSR1], maxsize=1.5)
@example(signals=[signal.SIGUSR1], maxsize=float("nan"))
@example(signals=[signal.SIGUSR1], maxsize="3")
@example(signals=[signal.SIGUSR1], maxsize=0)
@example(signals=[32], maxsize=1)  # glibc's own signal: a handler not from Python
def test_open_signal_receiver_refuses_bad_input_at_the_call(
    loop: asyncio.AbstractEventLoop, signals: list[object], maxsize: object
) -> None:
    got = run(loop, lambda: open_and_close_receiver(signals, maxsize))
    expected = expected_subscription_error(signals, loop)
    size = as_index(maxsize)
    if expected is not None:
        check_refusal(got, expected)
    elif not signals or (size is not None and size < 1):
        assert got[0] == "raised" and got[1][0] is ValueError and one_sentence(got), got
    elif size is None:
        assert got == outcome(lambda: operator.index(maxsize))  # type: ignore[arg-type]
    else:
        assert got == ("returned", None)


POLICIES = ("serial", "concurrent", "drop")


async def add_and_remove_handler(signum: object, fn: object, policy: object) -> Outcome:
    try:
        handle = aiosig.add_handler(signum, fn, policy=policy)  # type: ignore[arg-type]
    except Exception as exc:
        return ("raised", (type(exc), str(exc)))
    await handle.aclose()
    return ("returned", None)


async def decorate_and_remove(signum: object, fn: object, policy: object) -> Outcome:
    try:
        decorated = aiosig.on(signum, policy=policy)(fn)  # type: ignore[arg-type, type-var]
    except Exception as exc:
        return ("raised", (type(exc), str(exc)))
    await decorated.aiosig_handle.aclose()
    return ("returned", None)


handler_fns = st.one_of(st.just(noop), scalars)
policies = st.one_of(st.sampled_from(POLICIES), scalars)


@BOUNDED
@given(signum=signums, fn=handler_fns, policy=policies)
@example(signum=signal.SIGUSR1, fn=42, policy="serial")
def test_add_handler_and_on_refuse_bad_input_at_the_call(
    loop: asyncio.AbstractEventLoop, signum: object, fn: object, policy: object
) -> None:
    for register in (add_and_remove_handler, decorate_and_remove):
        got = run(loop, functools.partial(register, signum, fn, policy))
        if policy not in POLICIES:
            assert got[0] == "raised" and got[1][0] is ValueError and one_sentence(got), got
            continue
        if register is add_and_remove_handler and not callable(fn):
            assert got[0] == "raised" and got[1][0] is TypeError and one_sentence(got), got
            continue
        expected = expected_subscription_error([signum], loop)
        if expected is not None:
            check_refusal(got, expected)
        elif not callable(fn):
            assert got[0] == "raised" and got[1][0] is TypeError and one_sentence(got), got
        else:
            assert got == ("returned", None)


def test_on_refuses_a_non_callable_at_module_level_and_records_nothing(
    loop_factory: LoopFactory,
) -> None:
    with pytest.raises(TypeError) as info:
        aiosig.on(signal.SIGUSR1)(42)  # type: ignore[type-var]
    assert one_sentence(("raised", (info.type, str(info.value))))

    async def main() -> str:
        return "ran"

    # Had 42 been recorded, every later run would fail to start it.
    assert aiosig.run(main(), loop_factory=loop_factory) == "ran"


async def start_and_cancel_alarm(seconds: object) -> Outcome:
    try:
        future = aiosig.alarm(seconds)  # type: ignore[arg-type]
    except Exception as exc:
        return ("raised", (type(exc), str(exc)))
    future.cancel()
    return ("returned", None)


def setitimer_conversion_error(which: object, seconds: object, interval: object) -> Outcome | None:
    """What ``signal.setitimer`` raises before the kernel sees the call, if anything."""
    for args in ((which, seconds, -1), (which, -1, interval)):
        # -1: the kernel refuses whatever converts, so nothing is ever armed.
        probe = outcome(functools.partial(signal.setitimer, *args))
        if probe != ITIMER_EINVAL:
            return probe
    return None


def seconds_of(time: object) -> float:
    """A time that converts, in seconds."""
    return float(time) if isinstance(time, float) else operator.index(time)  # type: ignore[arg-type]


def soon(time: object) -> bool:
    """Whether a time that converts, if accepted, is due within 50 ms (0 included).

    Such a timer accepted and closed at once trips a known bug (reported): its expiry, read
    after the scheduler let go of the signal, is raised again with the default action, and
    the default action of the timer signals is to terminate. Valid timers are not what these
    tests are about, so they skip those.
    """
    return seconds_of(time) < 0.05  # a tiny negative float rounds up to 0: due at once


def negative(seconds: object) -> bool:
    """Whether a time that converts is negative once rounded up to whole microseconds."""
    if isinstance(seconds, float):
        return -(-math.ceil(seconds * 1e9) // 1000) < 0
    return operator.index(seconds) < 0  # type: ignore[arg-type]


@BOUNDED
@given(seconds=times)
def test_alarm_refuses_bad_delays_as_setitimer_does(
    loop: asyncio.AbstractEventLoop, seconds: object
) -> None:
    expected = setitimer_conversion_error(signal.ITIMER_REAL, seconds, 0)
    assume(expected is not None or not soon(seconds))
    got = run(loop, lambda: start_and_cancel_alarm(seconds))
    if expected is not None:
        assert got == expected
    else:
        assert got == (ITIMER_EINVAL if negative(seconds) else ("returned", None))


async def start_and_close_timer(which: object, seconds: object, interval: object) -> Outcome:
    try:
        timer = aiosig.setitimer(which, seconds, interval)  # type: ignore[arg-type]
    except Exception as exc:
        return ("raised", (type(exc), str(exc)))
    await timer.aclose()
    return ("returned", None)


@BOUNDED
@given(which=whichs, seconds=times, interval=times)
def test_setitimer_refuses_bad_arguments_as_the_stdlib_does(
    loop: asyncio.AbstractEventLoop, which: object, seconds: object, interval: object
) -> None:
    expected = setitimer_conversion_error(which, seconds, interval)
    assume(expected is not None or not (soon(seconds) or 0 < seconds_of(interval) < 0.05))
    got = run(loop, lambda: start_and_close_timer(which, seconds, interval))
    if expected is not None:
        assert got == expected
    elif operator.index(which) not in TIMERS or negative(seconds) or negative(interval):  # type: ignore[arg-type]
        assert got == ITIMER_EINVAL
    else:
        assert got == ("returned", None)


async def start_and_close_watchdog(threshold: object, callback: object, signum: object) -> Outcome:
    try:
        dog = aiosig.watchdog(threshold, callback=callback, signum=signum)  # type: ignore[arg-type]
    except Exception as exc:
        return ("raised", (type(exc), str(exc)))
    await dog.aclose()
    return ("returned", None)


def good_threshold(threshold: object) -> bool:
    """A number of seconds, positive and finite as a float (10**400 is not)."""
    if not isinstance(threshold, int | float) or isinstance(threshold, bool):
        return False
    seconds = outcome(lambda: float(threshold))
    return seconds[0] == "returned" and 0 < seconds[1] < math.inf


@BOUNDED
@given(
    threshold=st.one_of(scalars, st.floats(min_value=0.05, max_value=10.0)),
    # (huge valid thresholds come from `scalars`: a lock's wait could not take them)
    callback=st.one_of(st.none(), st.just(noop), scalars),
    signum=st.one_of(st.just(signal.SIGURG), scalars),
)
@example(threshold=0.5, callback=42, signum=signal.SIGURG)
@example(threshold=1e300, callback=None, signum=signal.SIGURG)
@example(threshold=10**400, callback=None, signum=signal.SIGURG)
@example(threshold=0.5, callback=None, signum="x")
@example(threshold=0.5, callback=None, signum=signal.SIGKILL)
@example(threshold=1, callback=None, signum=32)  # glibc's own: a handler not from Python
def test_watchdog_refuses_bad_input_at_the_call(
    loop: asyncio.AbstractEventLoop, threshold: object, callback: object, signum: object
) -> None:
    # A tiny threshold is valid, but pokes the main thread all the time: not the point here.
    assume(not good_threshold(threshold) or threshold >= 0.05)  # type: ignore[operator]
    got = run(loop, lambda: start_and_close_watchdog(threshold, callback, signum))
    if not good_threshold(threshold):
        assert got[0] == "raised" and one_sentence(got), got
    elif callback is not None and not callable(callback):
        assert got[0] == "raised" and got[1][0] is TypeError and one_sentence(got), got
    else:
        expected = expected_subscription_error([signum], loop)
        if expected is not None:
            check_refusal(got, expected)
        else:
            assert got == ("returned", None)


@pytest.mark.asyncio
async def test_watchdog_refused_for_its_signal_leaves_no_heartbeat_behind() -> None:
    with pytest.raises(TypeError):
        aiosig.watchdog(0.05, signum="x")  # type: ignore[arg-type]
    await asyncio.sleep(0.1)  # two heartbeats, had one been scheduled
    gc.collect()
    assert [o for o in gc.get_objects() if isinstance(o, aiosig.Watchdog)] == []
