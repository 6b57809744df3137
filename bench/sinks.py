"""Local sinks for member messages and webhooks: a real SMTP server (aiosmtpd) and an HTTP
receiver on loopback, each keeping what it receives. The deliveries benchmark sends to
them, and so do the tests (tests/notify)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    # Answers in order, then `otherwise`: (status, headers).
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    otherwise: tuple[int, dict[str, str]] = (200, {})
    # Seconds each answer takes (a slow receiver keeps a burst going for a while).
    delay: float = 0.0
    # Called with each request as it arrives (instead of keeping it), if set.
    on_receive: Callable[[Received], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        with self.lock:
            self.script.extend((status, headers or {}) for status in statuses)

    def unique_ids(self) -> set[str]:
        with self.lock:
            return {item.webhook_id for item in self.received}


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            if receiver.delay:
                time.sleep(receiver.delay)
            received = Received(
                path=self.path, body=body,
                headers={key.lower(): value for key, value in self.headers.items()})
            if receiver.on_receive is not None:
                receiver.on_receive(received)
            with receiver.lock:
                if receiver.on_receive is None:
                    receiver.received.append(received)
                status, headers = (receiver.script.pop(0) if receiver.script
                                   else receiver.otherwise)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    class Server(ThreadingHTTPServer):
        # A burst of concurrent senders must not meet a full accept queue (5 by default).
        request_queue_size = 256

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_port}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


# --- SMTP ---

@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Refuse recipients with this SMTP answer instead (e.g. "550 no such user").
    refuse: str | None = None

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [message for message in self.messages if message["To"] == address]


class _Handler:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: Any) -> str:
        if self.mailbox.refuse:
            return self.mailbox.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content or envelope.content,
                                     policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.mailbox.lock:
            self.mailbox.messages.append(message)
            self.mailbox.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server(handler: type[_Handler] | None = None) -> Iterator[Mailbox]:
    # aiosmtpd checks its server by connecting to the port it was given: a free one first.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailbox = Mailbox(host="127.0.0.1", port=port)
    controller = Controller((handler or _Handler)(mailbox), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


# --- a sink in a process of its own (the benchmark: a sink in the sending process would
# share its interpreter lock and slow the sender down) --------------------------------

@dataclass(frozen=True)
class Arrival:
    at: float  # wall clock (time.time()): comparable across processes
    key: str   # a webhook's id, or the e-mail's Message-ID (its delivery's id)


@dataclass
class SinkProcess:
    url: str
    record: Path

    def arrivals(self) -> list[Arrival]:
        found = []
        for line in self.record.read_text(encoding="utf-8").splitlines():
            at, _, key = line.partition(" ")
            found.append(Arrival(float(at), key))
        return found


@contextmanager
def sink_process(kind: str) -> Iterator[SinkProcess]:
    """An SMTP (``smtp``) or webhook (``http``) sink in its own process, writing a line per
    arrival to a file."""
    with tempfile.TemporaryDirectory(prefix="patron-sink-") as folder:
        record = Path(folder) / "arrivals"
        record.touch()
        process = subprocess.Popen([sys.executable, "-m", "bench.sinks", kind, str(record)],
                                   stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            if not url:
                raise RuntimeError(f"the {kind} sink did not start")
            yield SinkProcess(url=url, record=record)
        finally:
            process.terminate()
            process.wait(timeout=10)


MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^@>]+)", re.IGNORECASE | re.MULTILINE)


async def _lean_smtp(note: Callable[[str], None]) -> None:
    """An SMTP server that takes messages as fast as a mail server's front door does: the
    protocol's commands, the data read whole up to its end (``CRLF.CRLF``), the
    Message-ID found in the headers, nothing parsed beyond. aiosmtpd (the tests' server)
    handles the data a line at a time in Python, and on two cores it, not the sender,
    set the pace."""

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(b"250-sink\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    data = await reader.readuntil(b"\r\n.\r\n")
                    found = MESSAGE_ID.search(data)
                    note(found.group(1).decode() if found else "-")
                    writer.write(b"250 accepted\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:  # MAIL, RCPT, RSET, NOOP
                    writer.write(b"250 OK\r\n")
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(session, "127.0.0.1", 0, backlog=256,
                                        limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    print(f"smtp://127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def _serve(kind: str, record: str) -> None:
    out = open(record, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - the process's life
    lock = threading.Lock()

    def note(key: str) -> None:
        with lock:
            out.write(f"{time.time()} {key}\n")

    if kind == "smtp":
        asyncio.run(_lean_smtp(note))
    with webhook_receiver() as receiver:
        receiver.on_receive = lambda item: note(item.headers.get("webhook-id", "-"))
        print(receiver.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
