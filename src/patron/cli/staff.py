"""`patron staff`: people who sign in to the web app (docs/web.md, "People")."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from sqlalchemy import select

from patron.config import get_settings
from patron.db import Database
from patron.errors import PatronError
from patron.tenancy import staff as accounts
from patron.tenancy.models import Merchant, StaffRole

staff_app = typer.Typer(help="Staff accounts of the web app", no_args_is_help=True)


@staff_app.command("add")
def add(
    email: Annotated[str, typer.Option(help="The e-mail address they sign in with")],
    name: Annotated[str, typer.Option(help="Their name, as the pages show it")],
    role: Annotated[StaffRole, typer.Option(help="operator, owner, manager, cashier or "
                                                 "sales_rep")],
    merchant_number: Annotated[int | None, typer.Option(
        help="The 5-digit number of their merchant (owner, manager, cashier; optional for "
             "a sales rep)")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read their password from standard input instead of "
                                 "printing an invitation link")] = False,
) -> None:
    """Add a staff user: prints the invitation link where they choose their password (or
    sets the password read from standard input)."""
    settings = get_settings()
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    database = Database(settings.database_url)
    try:
        with database.session_scope() as session:
            merchant_id = None
            if merchant_number is not None:
                merchant_id = session.scalar(select(Merchant.id).where(
                    Merchant.number == merchant_number))
                if merchant_id is None:
                    raise typer.BadParameter(f"no merchant has the number {merchant_number:05d}",
                                             param_hint="--merchant-number")
            _user, token = accounts.create_staff(
                session, inviter=None, email=email, name=name, role=role,
                merchant_id=merchant_id, password=password)
    except PatronError as refusal:
        typer.echo(refusal.detail, err=True)
        raise typer.Exit(2) from refusal
    finally:
        database.dispose()
    if token is None:
        typer.echo(f"{email} may sign in at {settings.public_base_url}/login")
    else:
        typer.echo(f"Send {name} this link to choose a password (it works for 7 days, once):")
        typer.echo(f"{settings.public_base_url.rstrip('/')}/invitation/{token}")
