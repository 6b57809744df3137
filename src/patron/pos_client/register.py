"""The register: connected when the server answers, disconnected (queueing durably and
pricing locally) when it does not, and back once the queue has been replayed."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from patron.pos_client import pricing, signing
from patron.pos_client.errors import (
    AllowanceInvalid,
    OfflineRefused,
    OutcomeUnknown,
    PosClientError,
    ServerRefused,
)
from patron.pos_client.queue import Queue

# The request surely never reached the server: the sale can be queued as a new one.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Unavailable(PosClientError):
    """The server could not be reached or failed (5xx); ``sent`` when the request may
    have reached it."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass(frozen=True)
class CheckoutResult:
    receipt_no: str
    mode: str
    """``online``: the server committed it (``transaction``); ``offline``: queued, with
    ``provisional`` figures the server will confirm or correct at replay."""
    transaction: dict[str, Any] | None = None
    provisional: dict[str, Any] | None = None


@dataclass
class SyncReport:
    sent: int = 0
    committed: int = 0
    replayed: int = 0
    with_exception: int = 0
    refused: int = 0
    remaining: int = 0
    complete: bool = False
    refusals: list[dict[str, Any]] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Register:
    """One till. ``checkout`` and ``quote`` work connected or not; ``prepare(member)``
    fetches a signed allowance while connected (points burn and personal vouchers
    offline); ``sync()`` replays the queue. Thread-safe (one lock per register)."""

    def __init__(self, base_url: str, terminal_key: str, queue_path: str | Path, *,
                 timeout: float = 5.0, receipt_prefix: str = "R", batch_size: int = 100,
                 probe_interval: float = 30.0, transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], datetime] = _now) -> None:
        self.queue = Queue(queue_path)
        self.receipt_prefix = receipt_prefix
        self.batch_size = batch_size
        self.probe_interval = probe_interval
        self._clock = clock
        self._lock = threading.RLock()
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                  transport=transport,
                                  headers={"Authorization": f"Bearer {terminal_key}"})
        # A queue left from before a restart must be replayed before new sales go online.
        self._connected = self.queue.size() == 0
        self._last_probe = 0.0

    def close(self) -> None:
        self._http.close()
        self.queue.close()

    def __enter__(self) -> Register:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- connection ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except NOT_SENT as exc:
            self._connected = False
            raise Unavailable(f"cannot reach the server: {exc}", sent=False) from exc
        except httpx.TransportError as exc:
            self._connected = False
            raise Unavailable(f"the connection failed: {exc}", sent=True) from exc
        if response.status_code >= 500:
            self._connected = False
            raise Unavailable(f"the server failed ({response.status_code})", sent=True)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"code": f"http_{response.status_code}", "detail": response.text}
            raise ServerRefused(response.status_code, problem)
        return response.json()

    def ping(self) -> bool:
        """Does the server answer now? (Changes nothing, not even the mode.)"""
        try:
            response = self._http.get("/health")
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def probe(self) -> bool:
        """Is the server there? If so, replay the queue; connected again once it is empty."""
        with self._lock:
            self._last_probe = time.monotonic()
            try:
                self._request("GET", "/health")
            except (Unavailable, ServerRefused):
                return False
            return self.sync().complete

    def _maybe_probe(self) -> None:
        if not self._connected and time.monotonic() - self._last_probe >= self.probe_interval:
            self.probe()

    # --- the package and allowances ---------------------------------------------------

    def refresh_package(self) -> dict[str, Any]:
        with self._lock:
            package: dict[str, Any] = self._request("GET", "/v1/pos/offline/package")
            self.queue.put("package", package)
            return package

    def package(self) -> dict[str, Any] | None:
        package: dict[str, Any] | None = self.queue.get("package")
        return package

    def _fresh_package(self) -> dict[str, Any] | None:
        package = self.package()
        if package is None or _parse_time(package["valid_until"]) <= self._clock():
            with contextlib.suppress(Unavailable):
                package = self.refresh_package()
        return package

    def prepare(self, member: Mapping[str, Any]) -> dict[str, Any]:
        """Fetch (or refresh) a signed allowance for this member while connected: what the
        register may burn and which personal codes it may take while offline."""
        with self._lock:
            if self.queue.size():
                self.sync()
            package = self._fresh_package()
            if package is None:
                raise Unavailable("no package: the server cannot be reached", sent=False)
            signed: dict[str, Any] = self._request("POST", "/v1/pos/offline/allowances",
                                                   {"member": dict(member)})
            document = signed.get("allowance")
            if (not isinstance(document, dict)
                    or document.get("key_id") != package["key_id"]
                    or not signing.verify(package["public_key"], document,
                                          str(signed.get("signature", "")))):
                raise AllowanceInvalid("the allowance's signature does not verify with the "
                                       "server's public key")
            self.queue.save_allowance(signed)
            return document

    # --- selling -----------------------------------------------------------------------

    def quote(self, lines: Sequence[Mapping[str, Any]], *,
              member: Mapping[str, Any] | None = None, points_to_burn: int = 0,
              vouchers: Sequence[str] = ()) -> dict[str, Any]:
        """A preview: the server's quote when connected, local provisional figures if not."""
        with self._lock:
            self._maybe_probe()
            if self._connected:
                body = self._body("QUOTE", lines, member, points_to_burn, vouchers, None,
                                  self._clock(), "store", 0)
                try:
                    answer: dict[str, Any] = self._request("POST", "/v1/pos/quote", body)
                    return answer
                except Unavailable:
                    pass
            _, priced, _ = self._offline_terms(lines, member, points_to_burn, vouchers, 0)
            return {"provisional": True, **_figures(priced)}

    def checkout(self, lines: Sequence[Mapping[str, Any]], *,
                 member: Mapping[str, Any] | None = None, points_to_burn: int = 0,
                 vouchers: Sequence[str] = (), payment: Mapping[str, Any] | None = None,
                 receipt_no: str | None = None, occurred_at: datetime | None = None,
                 channel: str | None = None, miles_to_burn: int = 0) -> CheckoutResult:
        """Record a sale: committed by the server when connected, else queued with
        provisional figures. ``CheckoutRefused`` (``ServerRefused`` / ``OfflineRefused``)
        says why a sale cannot be recorded; nothing is then recorded. ``channel`` is left
        out unless given: the server takes it from the terminal's kind."""
        with self._lock:
            self._maybe_probe()
            receipt = receipt_no or self.queue.next_receipt_no(self.receipt_prefix)
            if self.queue.holds(receipt):
                raise OfflineRefused("receipt_queued", f"receipt {receipt} is already queued")
            body = self._body(receipt, lines, member, points_to_burn, vouchers, payment,
                              occurred_at or self._clock(), channel, miles_to_burn)
            sent = False
            if self._connected:
                try:
                    answer = self._request("POST", "/v1/pos/transactions", body)
                    return CheckoutResult(receipt_no=receipt, mode="online", transaction=answer)
                except Unavailable as exc:
                    sent = exc.sent
            try:
                return self._queue_sale(body, lines, member, points_to_burn, vouchers,
                                        miles_to_burn)
            except OfflineRefused:
                if sent:
                    # Kept durably so that the very same sale can be asked again.
                    self.queue.put(f"unknown:{receipt}", body)
                    raise OutcomeUnknown(receipt) from None
                raise

    def retry_unknown(self, receipt_no: str) -> CheckoutResult:
        """Send again, unchanged, a sale whose outcome was unknown (``OutcomeUnknown``):
        the server commits it or, if it already had it, answers it again."""
        with self._lock:
            body = self.queue.get(f"unknown:{receipt_no}")
            if body is None:
                raise PosClientError(f"no sale with an unknown outcome has receipt {receipt_no}")
            answer = self._request("POST", "/v1/pos/transactions", body)
            self.queue.forget(f"unknown:{receipt_no}")
            return CheckoutResult(receipt_no=receipt_no, mode="online", transaction=answer)

    def _body(self, receipt_no: str, lines: Sequence[Mapping[str, Any]],
              member: Mapping[str, Any] | None, points_to_burn: int, vouchers: Sequence[str],
              payment: Mapping[str, Any] | None, occurred_at: datetime,
              channel: str | None, miles_to_burn: int) -> dict[str, Any]:
        package = self.package() or {}
        body: dict[str, Any] = {
            "receipt_no": receipt_no, "occurred_at": occurred_at.astimezone(UTC).isoformat(),
            "currency": package.get("currency", ""), "lines": [dict(line) for line in lines],
            "points_to_burn": points_to_burn}
        if channel is not None:
            body["channel"] = channel
        if not body["currency"]:
            package = self._fresh_package() or {}
            body["currency"] = package.get("currency", "")
        if member is not None:
            body["member"] = dict(member)
        if miles_to_burn:
            body["miles_to_burn"] = miles_to_burn
        if vouchers:
            body["vouchers"] = [{"code": code} for code in vouchers]
        if payment is not None:
            body["payment"] = dict(payment)
        return body

    def _offline_terms(self, lines: Sequence[Mapping[str, Any]],
                       member: Mapping[str, Any] | None, points_to_burn: int,
                       vouchers: Sequence[str], miles_to_burn: int,
                       ) -> tuple[dict[str, Any] | None, pricing.Priced, list[str]]:
        """What the register may do offline: the allowance used (if any), the provisional
        figures and the codes taken; ``OfflineRefused`` with the reason otherwise."""
        package = self.package()
        if package is None:
            raise OfflineRefused("no_package", "the register has not downloaded the pricing "
                                               "rules yet; it cannot sell offline")
        if miles_to_burn:
            raise OfflineRefused("miles_offline", "coalition miles cannot be spent offline")
        if member is not None and member.get("qr") is not None:
            raise OfflineRefused("qr_offline", "a phone QR cannot be checked offline: scan "
                                               "the membership barcode or card")
        now = self._clock()
        signed: dict[str, Any] | None = None
        codes: list[pricing.OfflineCode] = []
        if points_to_burn or vouchers:
            if member is None:
                raise OfflineRefused("burn_needs_member", "identify the member to use points "
                                                          "or vouchers")
            found = self.queue.allowance_for(member_id=member.get("member_id"),
                                             member_number=member.get("barcode"))
            if found is None:
                raise OfflineRefused("no_allowance", "offline, points and vouchers need an "
                                                     "allowance fetched for this member "
                                                     "while connected")
            signed, burned, used = found
            document = signed["allowance"]
            if not signing.verify(package["public_key"], document, signed["signature"]):
                raise OfflineRefused("allowance_invalid", "the stored allowance does not "
                                                          "verify; fetch it again online")
            if _parse_time(document["expires_at"]) <= now:
                raise OfflineRefused("allowance_expired", "this member's offline allowance "
                                                          "has expired")
            remaining = int(document["burn_limit"]) - burned
            if points_to_burn > remaining:
                raise OfflineRefused("burn_over_allowance",
                                     f"at most {max(remaining, 0)} points can be burned "
                                     f"offline for this member")
            offered = {pricing.normalise_code(entry["code"]): entry
                       for entry in document["codes"]}
            used_now = {pricing.normalise_code(code) for code in used}
            for text in vouchers:
                key = pricing.normalise_code(text)
                entry = offered.get(key)
                if entry is None:
                    raise OfflineRefused("voucher_not_in_allowance",
                                         f"voucher {text} cannot be checked offline")
                if key in used_now:
                    raise OfflineRefused("voucher_already_used",
                                         f"voucher {text} was already used at this register")
                if entry.get("valid_until") and _parse_time(entry["valid_until"]) <= now:
                    raise OfflineRefused("voucher_expired", f"voucher {text} has expired")
                used_now.add(key)
                codes.append(pricing.OfflineCode.from_allowance({**entry, "code": text}))
        try:
            priced = pricing.price(
                pricing.Rules.from_package(package),
                [pricing.Line(sku=str(line["sku"]), name=str(line.get("name", "")),
                              quantity=int(line["quantity"]),
                              unit_price=int(line["unit_price"]),
                              category=line.get("category")) for line in lines],
                points_to_burn=points_to_burn, codes=codes, identified=member is not None)
        except pricing.PricingError as exc:
            raise OfflineRefused(exc.code, exc.message) from None
        return signed, priced, list(vouchers)

    def _queue_sale(self, body: dict[str, Any], lines: Sequence[Mapping[str, Any]],
                    member: Mapping[str, Any] | None, points_to_burn: int,
                    vouchers: Sequence[str], miles_to_burn: int) -> CheckoutResult:
        signed, priced, codes = self._offline_terms(lines, member, points_to_burn, vouchers,
                                                    miles_to_burn)
        provisional = {"points_earned": priced.points_earned,
                       "points_burned": priced.points_burned,
                       "discounts": {"points": priced.points_discount,
                                     "vouchers": priced.voucher_discounts, "miles": 0}}
        queued_at = self._clock().astimezone(UTC).isoformat()
        entry = {"queued_at": queued_at, "allowance": signed, "transaction": body,
                 "provisional": provisional}
        with self.queue.transaction() as db:
            self.queue.enqueue(db, receipt_no=body["receipt_no"], queued_at=queued_at,
                               body=entry)
            if signed is not None:
                self.queue.use_allowance(db, signed["allowance"]["id"],
                                         points=points_to_burn, codes=codes)
        self._connected = False
        return CheckoutResult(receipt_no=body["receipt_no"], mode="offline",
                              provisional={**_figures(priced), "provisional": True})

    # --- replay --------------------------------------------------------------------------

    def sync(self) -> SyncReport:
        """Replay the queue in order through the batch endpoint. Entries leave the queue
        only with the server's answer; on a connection failure what is left stays for the
        next sync. Connected again once the queue is empty."""
        report = SyncReport()
        with self._lock:
            while True:
                entries = self.queue.pending(limit=self.batch_size)
                if not entries:
                    self._connected = True
                    report.complete = True
                    return report
                payload = {"entries": [{"seq": entry.seq, **entry.body} for entry in entries]}
                try:
                    answer = self._request("POST", "/v1/pos/offline/batches", payload)
                except Unavailable:
                    report.remaining = self.queue.size()
                    return report
                except ServerRefused as exc:
                    if exc.status == 413 and self.batch_size > 1:
                        self.batch_size = max(self.batch_size // 2, 1)
                        continue
                    raise
                results = {int(result["seq"]): result for result in answer["results"]}
                if set(results) != {entry.seq for entry in entries}:
                    raise PosClientError("the server answered for other entries than sent")
                self.queue.acknowledge(
                    [(entry.seq, entry.receipt_no, results[entry.seq]["status"],
                      results[entry.seq]) for entry in entries],
                    recorded_at=self._clock().isoformat())
                report.sent += len(entries)
                for result in results.values():
                    status = result["status"]
                    if status == "committed":
                        report.committed += 1
                    elif status == "replayed":
                        report.replayed += 1
                    elif status == "committed_with_exception":
                        report.with_exception += 1
                    else:
                        report.refused += 1
                        report.refusals.append(result)

    def status(self) -> dict[str, Any]:
        package = self.package()
        return {"mode": "connected" if self._connected else "disconnected",
                "queued": self.queue.size(),
                "package_valid_until": None if package is None else package["valid_until"],
                "results": len(self.queue.results())}


def _figures(priced: pricing.Priced) -> dict[str, Any]:
    return {"subtotal": priced.subtotal, "voucher_discount": priced.voucher_discount,
            "voucher_discounts": priced.voucher_discounts,
            "points_discount": priced.points_discount, "total": priced.total,
            "points_burned": priced.points_burned, "points_earned": priced.points_earned}
