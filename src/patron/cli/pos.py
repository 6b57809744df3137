"""`patron pos`: drive a register from a terminal, through the POS SDK only (HTTP to the
server, the offline queue in a local SQLite file). Nothing here touches the database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from patron.pos_client import CheckoutRefused, OutcomeUnknown, PosClientError, Register

pos_app = typer.Typer(help="A POS register that keeps selling offline (the SDK)",
                      no_args_is_help=True)

_state: dict[str, Any] = {}


@pos_app.callback()
def _options(
    url: Annotated[str, typer.Option(envvar="PATRON_POS_URL",
                                     help="The server, e.g. http://127.0.0.1:8000")]
        = "http://127.0.0.1:8000",
    key: Annotated[str, typer.Option(envvar="PATRON_POS_KEY", help="The terminal's API key")]
        = "",
    queue: Annotated[Path, typer.Option(envvar="PATRON_POS_QUEUE",
                                        help="The register's offline queue (SQLite file)")]
        = Path("patron-pos.sqlite3"),
    timeout: Annotated[float, typer.Option(min=0.1, max=120)] = 5.0,
) -> None:
    _state.update(url=url, key=key, queue=queue, timeout=timeout)


def _register() -> Register:
    if not _state.get("key"):
        raise typer.BadParameter("give the terminal's key: --key or PATRON_POS_KEY")
    return Register(_state["url"], _state["key"], _state["queue"], timeout=_state["timeout"],
                    probe_interval=0)


def _print(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _member(barcode: str | None, member_id: str | None, card: str | None,
            phone: str | None) -> dict[str, str] | None:
    given = {name: value for name, value in (("barcode", barcode), ("member_id", member_id),
                                             ("card_uid", card), ("phone", phone)) if value}
    if len(given) > 1:
        raise typer.BadParameter("give one of --barcode, --member-id, --card, --phone")
    return given or None


def _line(text: str) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) not in (4, 5):
        raise typer.BadParameter(f"--line {text!r}: SKU:NAME:QUANTITY:UNIT_PRICE[:CATEGORY]")
    try:
        quantity, unit_price = int(parts[2]), int(parts[3])
    except ValueError as exc:
        raise typer.BadParameter(f"--line {text!r}: quantity and unit price are whole "
                                 f"numbers (minor units)") from exc
    line: dict[str, Any] = {"sku": parts[0], "name": parts[1], "quantity": quantity,
                            "unit_price": unit_price}
    if len(parts) == 5 and parts[4]:
        line["category"] = parts[4]
    return line


Barcode = Annotated[str | None, typer.Option(help="The member's barcode (member number)")]
MemberId = Annotated[str | None, typer.Option(help="The member's id")]
Card = Annotated[str | None, typer.Option(help="A contactless card UID")]
Phone = Annotated[str | None, typer.Option(help="A phone number")]


@pos_app.command()
def status() -> None:
    """Whether the server answers, what is queued, how fresh the pricing package is."""
    with _register() as register:
        _print({**register.status(), "server_reachable": register.ping()})


@pos_app.command()
def package() -> None:
    """Download the pricing package (program rules, public key) for offline selling."""
    with _register() as register:
        try:
            _print(register.refresh_package())
        except PosClientError as exc:
            typer.echo(f"cannot download the package: {exc}", err=True)
            raise typer.Exit(1) from exc


@pos_app.command()
def prepare(barcode: Barcode = None, member_id: MemberId = None, card: Card = None,
            phone: Phone = None) -> None:
    """Fetch a signed offline allowance for a member (points burn and personal codes)."""
    member = _member(barcode, member_id, card, phone)
    if member is None:
        raise typer.BadParameter("name the member: --barcode, --member-id, --card or --phone")
    with _register() as register:
        try:
            _print(register.prepare(member))
        except PosClientError as exc:
            typer.echo(f"no allowance: {exc}", err=True)
            raise typer.Exit(1) from exc


@pos_app.command()
def checkout(
    line: Annotated[list[str], typer.Option(help="SKU:NAME:QUANTITY:UNIT_PRICE[:CATEGORY], "
                                                 "repeat for each line")],
    barcode: Barcode = None, member_id: MemberId = None, card: Card = None,
    phone: Phone = None,
    burn: Annotated[int, typer.Option(min=0, help="Points to burn")] = 0,
    voucher: Annotated[list[str] | None, typer.Option(help="A voucher code (repeatable)")]
        = None,
    receipt: Annotated[str | None, typer.Option(help="Receipt number (default: the "
                                                     "register's next one)")] = None,
) -> None:
    """Record a sale: online when the server answers, queued offline when it does not."""
    with _register() as register:
        try:
            result = register.checkout([_line(text) for text in line],
                                       member=_member(barcode, member_id, card, phone),
                                       points_to_burn=burn, vouchers=voucher or (),
                                       receipt_no=receipt)
        except CheckoutRefused as exc:
            typer.echo(f"refused ({exc.code}): {exc.message}", err=True)
            raise typer.Exit(1) from exc
        except OutcomeUnknown as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(3) from exc
        _print({"receipt_no": result.receipt_no, "mode": result.mode,
                "transaction": result.transaction, "provisional": result.provisional})


@pos_app.command()
def sync() -> None:
    """Replay the offline queue; exit 1 if something is still queued afterwards."""
    with _register() as register:
        report = register.sync()
        _print(report.__dict__)
        if not report.complete:
            raise typer.Exit(1)


@pos_app.command("queue")
def show_queue(results: Annotated[bool, typer.Option(help="Also the server's answers to "
                                                          "replayed sales")] = False) -> None:
    """What is waiting to be replayed (and, with --results, what was)."""
    with _register() as register:
        pending = [{"seq": entry.seq, "receipt_no": entry.receipt_no,
                    "queued_at": entry.queued_at,
                    "provisional": entry.body.get("provisional")}
                   for entry in register.queue.pending()]
        _print({"pending": pending, **({"results": register.queue.results()} if results
                                       else {})})
