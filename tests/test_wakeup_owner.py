"""The wakeup fd's previous owner: forwarding to it never raises SIGPIPE, and a subscription
that cannot chain to it (no file descriptor left) is refused with everything left as it was.

The cases that restore SIGPIPE's default action (as command-line tools do), lower
RLIMIT_NOFILE or leave a dead wakeup fd behind run in a fresh interpreter, on asyncio and
uvloop both.
"""

from __future__ import annotations

import os
import signal
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from aiosig._wakeup import Chains
from tests._util import finish, run_child, send_from_child

FLAVOURS = ["asyncio", "uvloop"]
RUNNER = """
factory = None if sys.argv[1] == "asyncio" else __import__("uvloop").new_event_loop
with asyncio.Runner(loop_factory=factory) as runner:
    runner.run(main())
"""

# argv: flavour, "pipe" or "socket", then "default" to leave SIGPIPE at its default action
# (which kills) or "subscribed" to receive it too (a SIGPIPE would then show as a delivery
# that nobody sent). The previous owner's reading end is closed before aiosig chains to it,
# so the first forward finds it dead. Set inside the run: a uvloop run takes the fd at its
# start, and what it took is not aiosig's previous owner.
DEAD_OWNER = (
    textwrap.dedent(
        """
    import asyncio, os, signal, socket, sys
    import aiosig

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    def dead_owner(kind):
        if kind == "pipe":
            r, w = os.pipe2(os.O_NONBLOCK)
            os.close(r)
            return w
        w, peer = socket.socketpair()
        w.setblocking(False)
        peer.close()
        return w.detach()

    async def main():
        signal.set_wakeup_fd(dead_owner(sys.argv[2]))
        watched = {signal.SIGUSR1, signal.SIGUSR2}
        if sys.argv[3] == "subscribed":
            watched.add(signal.SIGPIPE)
        async with aiosig.open_signal_receiver(*watched) as receiver:
            print("READY")
            async with asyncio.timeout(5):
                first = await anext(receiver)
                # A SIGPIPE raised by forwarding would be queued before this one.
                os.kill(os.getpid(), signal.SIGUSR2)
                second = await anext(receiver)
        print("got", first.si_signo.name, second.si_signo.name)
    """
    )
    + RUNNER
)


@pytest.mark.parametrize("sigpipe", ["default", "subscribed"])
@pytest.mark.parametrize("kind", ["pipe", "socket"])
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_forwarding_to_a_dead_previous_owner_raises_no_sigpipe(
    flavour: str, kind: str, sigpipe: str
) -> None:
    child = run_child(DEAD_OWNER, flavour, kind, sigpipe)
    send_from_child(child.pid, 10)  # SIGUSR1
    returncode, out, err = finish(child)
    assert (returncode, out) == (0, "got SIGUSR1 SIGUSR2\n"), err


@contextmanager
def dead_pipe_owner() -> Iterator[Chains]:
    r, w = os.pipe2(os.O_NONBLOCK)
    os.close(r)
    chains = Chains()
    chains.push(w)
    try:
        yield chains
    finally:
        chains.close()
        os.close(w)


def test_a_user_who_blocks_sigpipe_finds_pending_only_the_sigpipe_that_was_there() -> None:
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
    try:
        with dead_pipe_owner() as chains:
            chains.forward(b"\n")  # its SIGPIPE is taken back
        assert signal.SIGPIPE not in signal.sigpending()
        signal.pthread_kill(threading.get_ident(), signal.SIGPIPE)
        with dead_pipe_owner() as chains:
            chains.forward(b"\n")  # merged with the user's: left alone
        assert signal.SIGPIPE in signal.sigpending()
        assert signal.sigwait({signal.SIGPIPE}) == signal.SIGPIPE
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# argv: flavour, "plain" or "precise". For k = 0, 1, 2... descriptors left under
# RLIMIT_NOFILE, a first subscription either works or is refused with EMFILE; when refused,
# the wakeup fd, the dispositions and the open descriptors are what they were, and the
# loop's own add_signal_handler callback still hears its signal.
NO_DESCRIPTOR_LEFT = (
    textwrap.dedent(
        """
    import asyncio, errno, itertools, os, resource, signal, sys
    import aiosig

    def open_fds():
        def is_open(fd):
            try:
                os.fstat(fd)
            except OSError:
                return False
            return True
        return frozenset(n for n in map(int, os.listdir("/proc/self/fd")) if is_open(n))

    def state():
        fd = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(fd)
        dispositions = {s: signal.getsignal(s) for s in signal.valid_signals()
                        if s not in (signal.SIGKILL, signal.SIGSTOP)}
        return fd, dispositions, open_fds()

    def leave_free(k):
        used = open_fds()
        free = (n for n in itertools.count() if n not in used)
        limit = next(itertools.islice(free, k, None))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        return soft, hard

    async def heard(event):
        event.clear()
        os.kill(os.getpid(), signal.SIGUSR1)
        async with asyncio.timeout(5):
            await event.wait()

    async def main():
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        loop.add_signal_handler(signal.SIGUSR1, event.set)
        if sys.argv[2] == "precise":
            aiosig.block(signal.SIGUSR2)
        before = state()
        # Loaded now: aiosig loads a module on first use, and that needs a descriptor too.
        open_signal_receiver = aiosig.open_signal_receiver
        for k in range(12):
            limits = leave_free(k)
            try:
                receiver = open_signal_receiver(signal.SIGUSR2)
            except OSError as exc:
                resource.setrlimit(resource.RLIMIT_NOFILE, limits)
                assert exc.errno == errno.EMFILE, exc
                assert state() == before, (k, before, state())
                await heard(event)
                print("refused", k, exc)
                continue
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            async with receiver:
                await heard(event)
                os.kill(os.getpid(), signal.SIGUSR2)
                async with asyncio.timeout(5):
                    await anext(receiver)
            await heard(event)
            print("READY")
            return
        print("never subscribed")
    """
    )
    + RUNNER
)


@pytest.mark.parametrize("path", ["plain", "precise"])
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_subscription_without_a_descriptor_to_spare_is_refused_and_changes_nothing(
    flavour: str, path: str
) -> None:
    child = run_child(NO_DESCRIPTOR_LEFT, flavour, path)
    refusals = child.before_ready.splitlines()
    # Two descriptors left: the self-pipe fits, chaining to the previous owner does not.
    assert len(refusals) >= 3, child.before_ready
    for k, line in enumerate(refusals):
        assert line.startswith(f"refused {k} [Errno 24] "), line
        assert "RLIMIT_NOFILE" in line, line
    assert finish(child)[0] == 0
