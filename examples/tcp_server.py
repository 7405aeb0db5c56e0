"""A TCP server that drains its connections on SIGTERM, under ``aiosig.run``.

Run it with ``python examples/tcp_server.py`` (``--uvloop`` for uvloop, ``--port N`` to pick
the port; 0, the default, lets the kernel choose). It serves a line protocol on 127.0.0.1:
``work <seconds>`` answers ``done`` after that long (a request that takes time), anything else
is echoed. Try it: ``nc 127.0.0.1 <port>``, type ``work 3``, and ``kill -TERM <pid>`` meanwhile.

On SIGTERM (or Ctrl-C) the shutdown is *requested*: the server stops accepting at once, each
connection finishes the request it is serving and says ``bye``, then ``main`` returns and the
process ends, dying of SIGTERM as the parent expects. ``drain=8`` gives ``main`` up to 8 s to
do that before it is cancelled, inside the 10 s ``grace`` budget that a thread enforces even
if the loop is stuck; a second SIGTERM cancels everything at once, a third ends the process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

import aiosig

log = logging.getLogger("tcp_server")


async def next_line(reader: asyncio.StreamReader, shutdown: aiosig.Shutdown) -> bytes | None:
    """The next line from the client, or None once the shutdown is requested while idle."""
    read = asyncio.ensure_future(reader.readline())
    stop = asyncio.ensure_future(shutdown.wait())
    await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not read.done():
        read.cancel()
        return None
    return read.result()


async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    shutdown = aiosig.current_shutdown()
    try:
        while not shutdown.requested:
            line = await next_line(reader, shutdown)
            if line is None:
                break  # idle when the shutdown came: say bye now
            if not line:
                return
            words = line.decode(errors="replace").split()
            if words[:1] == ["work"] and len(words) == 2:
                await asyncio.sleep(float(words[1]))  # the request's work
                writer.write(b"done\n")
            else:
                writer.write(line)
            await writer.drain()
        writer.write(b"bye\n")
        await writer.drain()
    finally:
        writer.close()


async def main(port: int) -> None:
    connections: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            await serve_one(reader, writer)
        finally:
            connections.discard(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", port)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    aiosig.notify_ready("accepting connections")  # READY=1 under systemd; a no-op otherwise
    shutdown = aiosig.current_shutdown()
    async with server:
        reason = await shutdown.wait()
        server.close()  # stop accepting; the open connections go on
        print(f"stopping ({reason}): draining {len(connections)} connection(s)", flush=True)
        if connections:
            # Each connection says bye after its current request. If one takes longer than
            # the drain, main is cancelled here and the remaining connections with it.
            await asyncio.wait(set(connections))
    print("all connections closed", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    factory = None
    if args.uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    aiosig.run(main(args.port), grace=10, drain=8, loop_factory=factory)
