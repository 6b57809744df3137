"""The guard of ``tests.connection_guard`` sees a request take a second connection while it
holds one, and only that."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import text
from starlette.testclient import TestClient

from patron.db import Database
from tests.connection_guard import GUARD


def _app(database: Database) -> FastAPI:
    app = FastAPI()

    @app.get("/one-after-another")
    def one_after_another() -> int:
        with database.session_scope() as first:
            first.execute(text("SELECT 1"))
        with database.read_scope() as second:
            return int(second.execute(text("SELECT 2")).scalar_one())

    @app.get("/one-inside-another")
    def one_inside_another() -> int:
        with database.session_scope() as first:
            first.execute(text("SELECT 1"))
            with database.read_scope() as second:
                return int(second.execute(text("SELECT 2")).scalar_one())

    return app


def test_the_guard_sees_a_second_connection_taken_inside_a_request_only(
        database: Database) -> None:
    client = TestClient(_app(database))
    GUARD.take_nested()
    assert client.get("/one-after-another").json() == 2
    assert GUARD.take_nested() == []
    assert client.get("/one-inside-another").json() == 2
    [found] = GUARD.take_nested()
    assert "one_inside_another" in found and "while holding" in found
    # outside a request (a test's own set-up, a job) two at once are allowed
    with database.session_scope() as first, database.read_scope() as second:
        first.execute(text("SELECT 1"))
        second.execute(text("SELECT 1"))
    assert GUARD.take_nested() == []
