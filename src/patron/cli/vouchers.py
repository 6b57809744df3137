"""`patron vouchers`: bulk codes from the command line (the operator's authority)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from patron.config import get_settings
from patron.db import Database
from patron.errors import PatronError
from patron.tenancy.service import SYSTEM
from patron.vouchers import batches
from patron.vouchers.models import BatchStatus, VoucherBatch
from patron.vouchers.schemas import MAX_CODES_AT_ONCE

vouchers_app = typer.Typer(help="Voucher codes", no_args_is_help=True)
console = Console(stderr=True)


@vouchers_app.command("generate")
def generate(
    offer_id: Annotated[str, typer.Argument(help="The offer the codes are for")],
    count: Annotated[int, typer.Option(min=1, max=batches.MAX_BATCH,
                                       help="How many bearer codes")],
    out: Annotated[Path, typer.Option(help="CSV file to write (code,barcode)")],
    max_redemptions: Annotated[int | None, typer.Option(
        min=1, help="Uses per code (default 1)")] = None,
) -> None:
    """Generate bearer codes for an offer as a batch (progress shown; resumable: the
    scheduler finishes a batch whose process stopped) and write them to a CSV file."""
    try:
        offer = uuid.UUID(offer_id)
    except ValueError as exc:
        raise typer.BadParameter(f"{offer_id!r} is not an offer id") from exc
    database = Database(get_settings().database_url)
    try:
        with database.session_scope() as session:
            if count <= MAX_CODES_AT_ONCE:
                raise typer.BadParameter(f"a batch makes more than {MAX_CODES_AT_ONCE} "
                                         "codes; issue fewer with POST /v1/offers/{id}/codes")
            batch_id = batches.start_batch(session, actor=SYSTEM, offer_id=offer, count=count,
                                           max_redemptions=max_redemptions).id
        console.print(f"batch {batch_id}")
        with Progress(*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=console) as bar:
            task = bar.add_task("generating", total=count)
            batches.run_batch(database, batch_id,
                              progress=lambda done, _total: bar.update(task, completed=done))
        with database.session_scope() as session:
            batch = session.get(VoucherBatch, batch_id)
            assert batch is not None
            status, error = batch.status, batch.error
        if status != BatchStatus.done.value:
            console.print(f"[red]batch {status}: {error}[/]")
            raise typer.Exit(1)
        written = 0
        with out.open("w", newline="") as csv:
            for chunk in batches.csv_lines(database, actor=SYSTEM, batch_id=batch_id):
                csv.write(chunk)
                written += chunk.count("\n")
        console.print(f"{written - 1} codes written to {out}")
    except PatronError as exc:
        console.print(f"[red]{exc.detail}[/]")
        raise typer.Exit(2) from exc
    finally:
        database.dispose()
