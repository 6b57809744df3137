"""The load generator: a separate process that sends requests over HTTP.

It runs in a process of its own (``multiprocessing``, spawned), so its CPU is not the
server's; it keeps one aiohttp session with keep-alive connections for its whole life and
runs the phases the benchmark sends it one at a time:

- **closed loop** (the maximum rate): ``concurrency`` workers, each sending its next
  request as soon as the previous one is answered; latency = answer - send;
- **open loop** (a fixed rate): arrivals on a Poisson schedule at ``rate`` per second,
  each sent at its scheduled time whether or not earlier ones were answered; latency is
  measured from the **scheduled** time, so a server that falls behind is charged for the
  queue it builds (no coordinated omission).

What it sends comes from a ``RequestSource`` made by the benchmark and handed to the
process: ``Checkouts`` here (the checkout benchmark), redemptions in ``bench.vouchers``,
wallet pages (``GET``) in ``bench.pages``. Redirects are not followed.
Every answer other than the source's success status is counted as an error with its
status and body.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import math
import multiprocessing
import random
import secrets
import signal
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import TracebackType
from typing import ClassVar

import aiohttp

from bench.baskets import PurchaseMaker, request_body
from bench.diagnostics import CpuMeter, CpuUse, Waits, WaitSampler
from bench.servers import BenchSetupError
from patron.identity.numbers import format_member_number

CHECKOUT_PATH = "/v1/pos/transactions"
OPEN_LOOP_CONNECTIONS = 256
DRAIN_SECONDS = 60.0
SHOWN_ERRORS = 3


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
    # The same latencies by the kind of request, for the sources that name kinds.
    kind_latencies_ms: dict[str, list[float]] = field(default_factory=dict)
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
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        return self.requests - self.ok

    @property
    def rate(self) -> float:
        """Requests answered with success per second of the phase."""
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, fraction: float, kind: str | None = None) -> float:
        """Nearest-rank percentile of the successful latencies (of one kind of request
        when given), in milliseconds."""
        values = self.latencies_ms if kind is None else self.kind_latencies_ms.get(kind, [])
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    kind: str = ""  # latencies are kept by kind too when not empty
    method: str = "POST"


class OutOfRequests(Exception):
    """The source has nothing left to send; the phase ends with this message."""


class RequestSource(ABC):
    """What the load generator sends; made by the benchmark, handed to the process."""

    ok_status: ClassVar[int] = 201
    # How much of a refused answer's body an error shows.
    error_chars: ClassVar[int] = 300

    @abstractmethod
    def next(self) -> Request:
        """The next request; raises ``OutOfRequests`` when there is none."""


class Checkouts(RequestSource):
    """Checkouts: a random till's key, a fresh receipt number, now's time."""

    def __init__(self, *, keys: tuple[str, ...], merchant_number: int, members: int,
                 currency: str, seed: int) -> None:
        self.merchant_number = merchant_number
        self.currency = currency
        self.maker = PurchaseMaker(members=members, seed=seed)
        self.rng = random.Random(seed + 1)
        self.headers = [{"Authorization": f"Bearer {key}",
                         "Content-Type": "application/json"} for key in keys]
        # Unique per load generator: receipts never repeat across runs on one database.
        self.prefix = f"L{secrets.token_hex(4)}-"
        self.sequence = 0

    def next(self) -> Request:
        self.sequence += 1
        purchase = self.maker.next()
        barcode = (None if purchase.customer_no is None else
                   format_member_number(self.merchant_number, purchase.customer_no))
        body = request_body(purchase, receipt_no=f"{self.prefix}{self.sequence}",
                            barcode=barcode, currency=self.currency)
        return Request(CHECKOUT_PATH, self.rng.choice(self.headers), body)


class _Recorder:
    def __init__(self, phase: Phase, source: RequestSource) -> None:
        self.source = source
        self.result = PhaseResult(name=phase.name, concurrency=phase.concurrency,
                                  offered_rate=phase.rate, elapsed=0.0)

    def record(self, status: int, latency_s: float, text: str, kind: str = "") -> None:
        self.result.statuses[status] += 1
        if status == self.source.ok_status:
            self.result.latencies_ms.append(latency_s * 1000)
            if kind:
                self.result.kind_latencies_ms.setdefault(kind, []).append(latency_s * 1000)
        elif len(self.result.errors) < SHOWN_ERRORS:
            self.result.errors.append(f"{status}: {text[:self.source.error_chars]}")


async def _send(session: aiohttp.ClientSession, request: Request,
                ok_status: int) -> tuple[int, str]:
    try:
        # Redirects are not followed: a redirect (to a sign-in page, say) is the answer,
        # never a success reached through another page.
        async with session.request(request.method, request.path, data=request.body or None,
                                   headers=request.headers,
                                   allow_redirects=False) as response:
            payload = await response.read()
            if response.status == ok_status:
                return ok_status, ""
            return response.status, payload.decode(errors="replace")
    except (TimeoutError, aiohttp.ClientError) as exc:
        return 0, f"{type(exc).__name__}: {exc}"


async def _closed_loop(session: aiohttp.ClientSession, source: RequestSource,
                       phase: Phase) -> PhaseResult:
    recorder = _Recorder(phase, source)
    started = time.perf_counter()
    deadline = started + phase.seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            request = source.next()
            sent = time.perf_counter()
            status, text = await _send(session, request, source.ok_status)
            recorder.record(status, time.perf_counter() - sent, text, request.kind)

    await asyncio.gather(*(worker() for _ in range(phase.concurrency)))
    recorder.result.elapsed = time.perf_counter() - started
    return recorder.result


async def _open_loop(session: aiohttp.ClientSession, source: RequestSource,
                     phase: Phase, seed: int) -> PhaseResult:
    recorder = _Recorder(phase, source)
    rng = random.Random(seed)
    exhausted: list[OutOfRequests] = []

    async def one(scheduled: float) -> None:
        try:
            request = source.next()
        except OutOfRequests as exc:
            exhausted.append(exc)
            return
        status, text = await _send(session, request, source.ok_status)
        recorder.record(status, time.perf_counter() - scheduled, text, request.kind)

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
        if exhausted:
            raise exhausted[0]
        tasks.append(asyncio.create_task(one(scheduled)))
    _, pending = await asyncio.wait(tasks, timeout=DRAIN_SECONDS) if tasks else (set(), set())
    for task in pending:
        task.cancel()
        recorder.record(0, 0.0, f"no answer {DRAIN_SECONDS:.0f} s after the phase ended")
    if exhausted:
        raise exhausted[0]
    recorder.result.elapsed = phase.seconds
    return recorder.result


async def _serve(base_url: str, source: RequestSource, seed: int, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=OPEN_LOOP_CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=DRAIN_SECONDS)
    async with aiohttp.ClientSession(base_url, connector=connector,
                                     timeout=timeout) as session:
        for number in itertools.count():
            phase: Phase | None = await loop.run_in_executor(None, conn.recv)
            if phase is None:
                return
            cpu = time.process_time()
            # The instrument must not pause: no cyclic garbage collection during a phase
            # (a full one takes tens of milliseconds, charged to every request in flight).
            gc.disable()
            try:
                if phase.concurrency > 0:
                    result = await _closed_loop(session, source, phase)
                else:
                    result = await _open_loop(session, source, phase, seed + number)
            except OutOfRequests as exc:
                conn.send(str(exc))
                continue
            finally:
                gc.enable()
                gc.collect()
            result.client_cpu = time.process_time() - cpu
            conn.send(result)


def _child(base_url: str, source: RequestSource, seed: int, conn: Connection) -> None:
    # Ctrl-C reaches the whole process group: the parent decides when this process ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_serve(base_url, source, seed, conn))


class LoadGenerator:
    """The load generator process sending ``source``'s requests to ``base_url``;
    ``run(phase)`` waits for that phase's result. The open loop's arrivals are drawn
    from ``seed`` (plus the phase's number)."""

    def __init__(self, base_url: str, source: RequestSource, *, seed: int,
                 name: str = "patron-bench-load") -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(target=_child,
                                        args=(base_url, source, seed, child_conn),
                                        name=name, daemon=True)

    def __enter__(self) -> LoadGenerator:
        self._process.start()
        return self

    def run(self, phase: Phase) -> PhaseResult:
        """The phase's result; ``BenchSetupError`` when the source ran out of requests."""
        self._conn.send(phase)
        wait_until = time.monotonic() + phase.seconds + DRAIN_SECONDS + 60
        while not self._conn.poll(1.0):
            if not self._process.is_alive():
                raise RuntimeError(f"the load generator died during {phase.name!r} "
                                   f"(exit code {self._process.exitcode})")
            if time.monotonic() > wait_until:
                raise RuntimeError(f"the load generator did not finish {phase.name!r}")
        result: PhaseResult | str = self._conn.recv()
        if isinstance(result, str):
            raise BenchSetupError(result)
        return result

    def run_measured(self, phase: Phase, *, server_pid: int,
                     database_url: str) -> tuple[PhaseResult, Waits | None]:
        """Run a phase with the server's CPU meter (and, on PostgreSQL, the database's
        and the wait sampler) on it."""
        postgres = database_url.startswith("postgresql")
        meter = CpuMeter(server_pid, database_url if postgres else None)
        meter.start()
        if postgres:
            with WaitSampler(database_url) as sampler:
                result = self.run(phase)
            waits: Waits | None = sampler.waits
        else:
            result, waits = self.run(phase), None
        result.cpu = meter.stop()
        return result, waits

    def probe(self, concurrencies: list[int], seconds: float,
              show: Callable[[PhaseResult], None]) -> tuple[list[PhaseResult], int]:
        """The closed loop at each concurrency for ``seconds`` (none when only one is
        given), each result shown as it comes; the results and the best concurrency."""
        probes = []
        for concurrency in concurrencies if len(concurrencies) > 1 else []:
            probe = self.run(Phase(f"probe {concurrency}", seconds, concurrency=concurrency))
            probes.append(probe)
            show(probe)
        best = (max(probes, key=lambda probe: probe.rate).concurrency if probes
                else concurrencies[0])
        return probes, best

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
