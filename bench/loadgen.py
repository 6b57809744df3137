"""The load generator: a separate process that sends checkouts over HTTP.

It runs in a process of its own (``multiprocessing``, spawned), so its CPU is not the
server's; it keeps one aiohttp session with keep-alive connections for its whole life and
runs the phases the benchmark sends it one at a time:

- **closed loop** (the maximum rate): ``concurrency`` workers, each sending its next
  checkout as soon as the previous one is answered; latency = answer - send;
- **open loop** (a fixed rate): arrivals on a Poisson schedule at ``rate`` per second,
  each sent at its scheduled time whether or not earlier ones were answered; latency is
  measured from the **scheduled** time, so a server that falls behind is charged for the
  queue it builds (no coordinated omission).

Every answer other than 201 is counted as an error with its status and body.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import multiprocessing
import random
import secrets
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import TracebackType

import aiohttp

from bench.baskets import PurchaseMaker, request_body
from bench.diagnostics import CpuUse
from patron.identity.numbers import format_member_number

CHECKOUT_PATH = "/v1/pos/transactions"
OPEN_LOOP_CONNECTIONS = 256
DRAIN_SECONDS = 60.0
SHOWN_ERRORS = 3


@dataclass(frozen=True)
class Target:
    base_url: str
    keys: tuple[str, ...]
    merchant_number: int
    members: int
    currency: str
    seed: int


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    concurrency: int = 0  # closed loop when above 0
    rate: float = 0.0  # open loop (arrivals per second) otherwise


@dataclass
class PhaseResult:
    name: str
    concurrency: int
    offered_rate: float
    elapsed: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    # CPU seconds the load generator itself used during the phase; the server's and the
    # database's, measured from outside (``bench.diagnostics``), when known.
    client_cpu: float = 0.0
    cpu: CpuUse | None = None

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def failed(self) -> int:
        return sum(count for status, count in self.statuses.items() if status != 201)

    @property
    def rate(self) -> float:
        """Checkouts answered 201 per second of the phase."""
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile of the successful latencies, in milliseconds."""
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


class _Requests:
    """Bodies and headers: a random till's key, a fresh receipt number, now's time."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.maker = PurchaseMaker(members=target.members, seed=target.seed)
        self.rng = random.Random(target.seed + 1)
        self.headers = [{"Authorization": f"Bearer {key}",
                         "Content-Type": "application/json"} for key in target.keys]
        # Unique per load generator: receipts never repeat across runs on one database.
        self.prefix = f"L{secrets.token_hex(4)}-"
        self.sequence = 0

    def next(self) -> tuple[dict[str, str], bytes]:
        self.sequence += 1
        purchase = self.maker.next()
        barcode = (None if purchase.customer_no is None else
                   format_member_number(self.target.merchant_number, purchase.customer_no))
        body = request_body(purchase, receipt_no=f"{self.prefix}{self.sequence}",
                            barcode=barcode, currency=self.target.currency)
        return self.rng.choice(self.headers), body


class _Recorder:
    def __init__(self, phase: Phase) -> None:
        self.result = PhaseResult(name=phase.name, concurrency=phase.concurrency,
                                  offered_rate=phase.rate, elapsed=0.0)

    def record(self, status: int, latency_s: float, text: str) -> None:
        self.result.statuses[status] += 1
        if status == 201:
            self.result.latencies_ms.append(latency_s * 1000)
        elif len(self.result.errors) < SHOWN_ERRORS:
            self.result.errors.append(f"{status}: {text[:300]}")


async def _send(session: aiohttp.ClientSession, headers: dict[str, str],
                body: bytes) -> tuple[int, str]:
    try:
        async with session.post(CHECKOUT_PATH, data=body, headers=headers) as response:
            payload = await response.read()
            if response.status == 201:
                return 201, ""
            return response.status, payload.decode(errors="replace")
    except (TimeoutError, aiohttp.ClientError) as exc:
        return 0, f"{type(exc).__name__}: {exc}"


async def _closed_loop(session: aiohttp.ClientSession, requests: _Requests,
                       phase: Phase) -> PhaseResult:
    recorder = _Recorder(phase)
    started = time.perf_counter()
    deadline = started + phase.seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            headers, body = requests.next()
            sent = time.perf_counter()
            status, text = await _send(session, headers, body)
            recorder.record(status, time.perf_counter() - sent, text)

    await asyncio.gather(*(worker() for _ in range(phase.concurrency)))
    recorder.result.elapsed = time.perf_counter() - started
    return recorder.result


async def _open_loop(session: aiohttp.ClientSession, requests: _Requests,
                     phase: Phase, seed: int) -> PhaseResult:
    recorder = _Recorder(phase)
    rng = random.Random(seed)

    async def one(scheduled: float) -> None:
        headers, body = requests.next()
        status, text = await _send(session, headers, body)
        recorder.record(status, time.perf_counter() - scheduled, text)

    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    end = started + phase.seconds
    scheduled = started
    while True:
        scheduled += rng.expovariate(phase.rate)
        if scheduled >= end:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    _, pending = await asyncio.wait(tasks, timeout=DRAIN_SECONDS) if tasks else (set(), set())
    for task in pending:
        task.cancel()
        recorder.record(0, 0.0, f"no answer {DRAIN_SECONDS:.0f} s after the phase ended")
    recorder.result.elapsed = phase.seconds
    return recorder.result


async def _serve(target: Target, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    requests = _Requests(target)
    connector = aiohttp.TCPConnector(limit=OPEN_LOOP_CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=DRAIN_SECONDS)
    async with aiohttp.ClientSession(target.base_url, connector=connector,
                                     timeout=timeout) as session:
        for number in itertools.count():
            phase: Phase | None = await loop.run_in_executor(None, conn.recv)
            if phase is None:
                return
            cpu = time.process_time()
            if phase.concurrency > 0:
                result = await _closed_loop(session, requests, phase)
            else:
                result = await _open_loop(session, requests, phase, target.seed + number)
            result.client_cpu = time.process_time() - cpu
            conn.send(result)


def _child(target: Target, conn: Connection) -> None:
    # Ctrl-C reaches the whole process group: the parent decides when this process ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_serve(target, conn))


class LoadGenerator:
    """The load generator process; ``run(phase)`` waits for that phase's result."""

    def __init__(self, target: Target) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(target=_child, args=(target, child_conn),
                                        name="patron-bench-load", daemon=True)

    def __enter__(self) -> LoadGenerator:
        self._process.start()
        return self

    def run(self, phase: Phase) -> PhaseResult:
        self._conn.send(phase)
        wait_until = time.monotonic() + phase.seconds + DRAIN_SECONDS + 60
        while not self._conn.poll(1.0):
            if not self._process.is_alive():
                raise RuntimeError(f"the load generator died during {phase.name!r} "
                                   f"(exit code {self._process.exitcode})")
            if time.monotonic() > wait_until:
                raise RuntimeError(f"the load generator did not finish {phase.name!r}")
        result: PhaseResult = self._conn.recv()
        return result

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(None)
        # After an error or Ctrl-C the child may be mid-phase: do not wait for it.
        self._process.join(10 if error is None else 0.5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()
