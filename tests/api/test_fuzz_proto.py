from __future__ import annotations
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from patron.app import create_app
from patron.config import get_settings
from patron.db import Database
from tests.conftest import auth

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(get_settings(), Database("sqlite:///:memory:")))

@pytest.fixture(scope="module")
def fuzz_app(database):
    return create_app(get_settings(), database)

@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_operator(case, world, fuzz_app):
    case.call_and_validate(app=fuzz_app, headers=auth(world.operator_key))
