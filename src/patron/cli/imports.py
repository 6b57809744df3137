"""`patron import`: a merchant's members and purchase history from its previous system
(docs/imports.md), with the operator's authority."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from patron.config import get_settings
from patron.db import Database
from patron.errors import PatronError
from patron.imports.schemas import ImportKind, PointsPolicy
from patron.tenancy.service import SYSTEM, merchant_by_number

if TYPE_CHECKING:
    from patron.imports.schemas import ImportSummary

import_app = typer.Typer(help="Import members and purchase history from another system",
                         no_args_is_help=True)
console = Console(stderr=True)

FileArgument = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                              help="The CSV file (UTF-8, a header row)")]
MerchantOption = Annotated[int, typer.Option(help="The merchant's 5-digit number",
                                             min=1, max=99_999)]
RefusedOption = Annotated[Path | None, typer.Option(
    help="Where the refused rows go (CSV: line, key, code, reason); default: beside the "
         "file, as NAME.refused.csv, written only when a row is refused")]


@import_app.command("members")
def members(file: FileArgument, merchant_number: MerchantOption,
            refused: RefusedOption = None) -> None:
    """Enrol the members of FILE (external_ref, phone, email, card_uid, birth_year, gender,
    postal_code, language, enrolled_at, points_balance). Run it again: it adds nothing."""
    _run(ImportKind.members, file, merchant_number, refused, PointsPolicy.none)


@import_app.command("purchases")
def purchases(file: FileArgument, merchant_number: MerchantOption,
              refused: RefusedOption = None,
              points: Annotated[PointsPolicy, typer.Option(
                  help="none: the purchases earn nothing (import an opening balance with "
                       "the members instead); as-earned: the points the program gives, "
                       "dated when they were earned")] = PointsPolicy.none) -> None:
    """Import the purchases of FILE (external_ref, receipt_no, occurred_at, amount,
    currency, store_code, sku, category, quantity; the rows of one receipt together) for
    the merchant's members. Run it again: it adds nothing."""
    _run(ImportKind.purchases, file, merchant_number, refused, points)


def _run(kind: ImportKind, file: Path, merchant_number: int, refused: Path | None,
         points: PointsPolicy) -> None:
    refused_path = refused or file.with_name(f"{file.stem}.refused.csv")
    database = Database(get_settings().database_url)
    try:
        with database.session_scope() as session:
            merchant_id = merchant_by_number(session, actor=SYSTEM, number=merchant_number).id
        with file.open("rb") as binary, refused_path.open("w", newline="",
                                                          encoding="utf-8") as out, \
                Progress("[progress.description]{task.description}", BarColumn(),
                         DownloadColumn(), TimeRemainingColumn(), console=console,
                         transient=True) as bar:
            task = bar.add_task(f"importing {kind.value}", total=file.stat().st_size)

            def progress(_rows: int) -> None:
                bar.update(task, completed=binary.tell())

            summary = _import(kind, database, merchant_id, binary, out, progress, points)
    except PatronError as exc:
        console.print(f"[red]{exc.detail}[/]")
        with contextlib.suppress(FileNotFoundError):
            if refused_path.stat().st_size < 32:  # the header alone
                refused_path.unlink()
        raise typer.Exit(2) from exc
    finally:
        database.dispose()
    if not summary.refused:
        refused_path.unlink()
    noun = "members" if kind == ImportKind.members else "purchases"
    console.print(f"{summary.rows:,} rows read: [green]{summary.imported:,} {noun} imported"
                  f"[/], {summary.already_there:,} already there, "
                  f"{'[red]' if summary.refused else ''}{summary.refused:,} refused"
                  f"{'[/]' if summary.refused else ''}")
    if summary.refused:
        console.print(f"the refused rows, with their line numbers and why: {refused_path}")
        for row in summary.refused_rows[:5]:
            console.print(f"  line {row.line}: {row.code}: {row.reason}")
        raise typer.Exit(1)


def _import(kind: ImportKind, database: Database, merchant_id: uuid.UUID,
            binary: IO[bytes], out: IO[str], progress: Callable[[int], None],
            points: PointsPolicy) -> ImportSummary:
    from patron.imports import runner

    if kind == ImportKind.members:
        return runner.import_members(database.session_scope, actor=SYSTEM, merchant_id=merchant_id,
                                     file=binary, refused_csv=out, progress=progress)
    return runner.import_purchases(database.session_scope, actor=SYSTEM, merchant_id=merchant_id,
                                   file=binary, points=points, refused_csv=out,
                                   progress=progress)
