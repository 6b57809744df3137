"""Alembic environment: the URL comes from PATRON_DATABASE_URL (or the caller's config)."""

from __future__ import annotations

from alembic import context

from patron.config import get_settings
from patron.db import make_engine, schema_filter
from patron.models import metadata

config = context.config


def run_migrations() -> None:
    url = config.attributes.get("database_url") or get_settings().database_url
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=True,  # SQLite can only ALTER tables by copying them
        compare_type=True,
        include_object=schema_filter(connection.dialect.name),  # type: ignore[attr-defined]
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run 'patron db upgrade'")
run_migrations()
