"""A TCP proxy that adds latency: every chunk, in either direction, is forwarded a fixed
delay after it arrived.

It stands between the application and PostgreSQL so that concurrency tests run with the
timing of a database across a slow network: each statement's round trip takes at least
twice the delay, and the gaps between a transaction's reads and its writes widen
accordingly. Chunks are delayed independently (a chunk that arrives while an earlier one
waits is not held up further), so the proxy adds latency without limiting throughput, and
their order within a direction is kept.

The proxy runs an asyncio loop in a daemon thread; use it as a context manager::

    with DelayProxy("127.0.0.1", 5432, delay=0.1) as proxy:
        ...  # connect to 127.0.0.1:proxy.port
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

CHUNK_BYTES = 65_536


class DelayProxy:
    def __init__(self, target_host: str, target_port: int, *, delay: float = 0.1) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.delay = delay
        self.port = 0
        # Counted so that a test can show its traffic really went through the proxy.
        self.connections = 0
        self.chunks = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="delay-proxy",
                                        daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._track(task)
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(
                self.target_host, self.target_port)
        except OSError:
            client_writer.close()
            return
        try:
            await asyncio.gather(self._pipe(client_reader, server_writer),
                                 self._pipe(server_reader, client_writer),
                                 return_exceptions=True)
        except asyncio.CancelledError:
            # The proxy is stopping: end quietly (asyncio would log a cancelled
            # connection handler as an error).
            pass
        finally:
            for writer in (client_writer, server_writer):
                writer.close()
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    await writer.wait_closed()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read chunks as they come; a second task writes each one ``delay`` after it
        arrived. End of stream is forwarded the same delay later."""
        loop = asyncio.get_running_loop()
        due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def forward() -> None:
            while True:
                at, chunk = await due.get()
                wait = at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.create_task(forward())
        try:
            while True:
                chunk = await reader.read(CHUNK_BYTES)
                self.chunks += 1 if chunk else 0
                due.put_nowait((loop.time() + self.delay, chunk))
                if not chunk:
                    break
            await sender
        except OSError:
            # A peer reset the connection: close the other side too, which ends the
            # other direction.
            writer.close()
        finally:
            sender.cancel()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await sender
