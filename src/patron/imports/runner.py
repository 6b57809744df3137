"""Running an import over a whole file: chunk after chunk, each in its own transaction
(the boundary of ``imports.service``, as a request is of an endpoint's service call).

A chunk that commits stays: an import stopped halfway is run again, and what it had
added is found there (``already_there``). Used by ``patron import``, the bulk import
endpoints and ``patron demo``."""

from __future__ import annotations

import csv
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import IO, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.imports import service
from patron.imports.formats import CsvRows
from patron.imports.schemas import (
    MEMBER_COLUMNS,
    PURCHASE_COLUMNS,
    ImportKind,
    ImportSummary,
    PointsPolicy,
    RefusedRow,
)
from patron.kit.clock import utcnow
from patron.tenancy.service import Principal

MEMBERS_PER_CHUNK = 2_000
RECEIPTS_PER_CHUNK = 2_000
# Refused rows an answer lists (the command line writes every one to its CSV file).
LISTED_REFUSALS = 10_000

T = TypeVar("T")
# A unit of work per chunk: ``Database.session_scope`` (each chunk commits), or one
# session the caller commits (``patron demo``).
Scope = Callable[[], AbstractContextManager[Session]]


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


class Tally:
    """The running summary of an import, and where its refused rows go."""

    def __init__(self, kind: ImportKind, refused_csv: IO[str] | None,
                 progress: Callable[[int], None] | None) -> None:
        self.kind = kind
        self.imported = self.already_there = self.refused = 0
        self.listed: list[RefusedRow] = []
        self.truncated = False
        self.progress = progress
        self.writer = csv.writer(refused_csv) if refused_csv is not None else None
        if self.writer is not None:
            self.writer.writerow(["line", "key", "code", "reason"])

    def add(self, outcomes: service.Outcomes, read: int) -> None:
        self.imported += outcomes.imported
        self.already_there += outcomes.already_there
        self.refused += len(outcomes.refused)
        # In the file's order (a chunk's refusals are found in several passes).
        rows = sorted((RefusedRow(line=line, key=refusal.key, code=refusal.error.code,
                                  reason=refusal.error.detail)
                       for refusal in outcomes.refused for line in refusal.lines),
                      key=lambda row: row.line)
        for row in rows:
            if self.writer is not None:
                self.writer.writerow([row.line, row.key or "", row.code, row.reason])
            if len(self.listed) < LISTED_REFUSALS:
                self.listed.append(row)
            else:
                self.truncated = True
        if self.progress is not None:
            self.progress(read)

    def summary(self, rows: int) -> ImportSummary:
        return ImportSummary(kind=self.kind, rows=rows, imported=self.imported,
                             already_there=self.already_there, refused=self.refused,
                             refused_rows=self.listed,
                             refused_rows_truncated=self.truncated)


def _in_unit(scope: Scope, work: Callable[[Session], service.Outcomes]) -> service.Outcomes:
    """One chunk in its unit of work, run a second time when a unique key refused its rows:
    the same file imported at the same moment by another process (that run's members and
    receipts are then found, ``already_there``)."""
    try:
        with scope() as session:
            return work(session)
    except IntegrityError:
        with scope() as session:
            return work(session)


def check_importer(scope: Scope, actor: Principal, merchant_id: uuid.UUID) -> None:
    """Who may import (``service.importing_merchant``), decided before the file is read."""
    with scope() as session:
        service.importing_merchant(session, actor=actor, merchant_id=merchant_id)


def import_members(scope: Scope, *, actor: Principal, merchant_id: uuid.UUID,
                   file: IO[bytes], refused_csv: IO[str] | None = None,
                   progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Import a members file (docs/imports.md) into the merchant's members."""
    check_importer(scope, actor, merchant_id)
    rows = CsvRows(file, columns=MEMBER_COLUMNS, required=("external_ref",))
    tally = Tally(ImportKind.members, refused_csv, progress)
    for chunk in _chunks(rows, MEMBERS_PER_CHUNK):
        def members(session: Session, chunk: list[service.Row] = chunk) -> service.Outcomes:
            merchant = service.importing_merchant(session, actor=actor,
                                                  merchant_id=merchant_id)
            return service.import_members(session, merchant=merchant, rows=chunk,
                                          now=utcnow())

        tally.add(_in_unit(scope, members), rows.rows)
    return tally.summary(rows.rows)


def import_purchases(scope: Scope, *, actor: Principal, merchant_id: uuid.UUID,
                     file: IO[bytes], points: PointsPolicy = PointsPolicy.none,
                     refused_csv: IO[str] | None = None,
                     progress: Callable[[int], None] | None = None) -> ImportSummary:
    """Import a purchases file (docs/imports.md) as the merchant's members' purchases."""
    check_importer(scope, actor, merchant_id)
    rows = CsvRows(file, columns=PURCHASE_COLUMNS,
                   required=("external_ref", "receipt_no", "occurred_at", "amount",
                             "currency"))
    tally = Tally(ImportKind.purchases, refused_csv, progress)
    for chunk in _chunks(service.receipts(rows), RECEIPTS_PER_CHUNK):
        def purchases(session: Session,
                      chunk: list[service.Receipt] = chunk) -> service.Outcomes:
            merchant = service.importing_merchant(session, actor=actor,
                                                  merchant_id=merchant_id)
            return service.import_purchases(session, merchant=merchant, chunk=chunk,
                                            points=points, now=utcnow())

        tally.add(_in_unit(scope, purchases), rows.rows)
    return tally.summary(rows.rows)
