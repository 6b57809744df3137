"""API fuzzing: schemathesis generates requests from the app's own OpenAPI document and
checks every answer against it: no 5xx, no undocumented status code, content type or header,
no body that breaks its declared schema, no 405 without ``Allow``, no ignored authentication.

Every generated request is sent as a POS terminal, as a merchant and as the operator (one
generation, three calls), and most generated path ids are real objects of both merchants
(see ``_real_path_ids``), so requests get past "not found" into the business rules. The
run is derandomized so the suite is repeatable; set ``PATRON_FUZZ_EXAMPLES`` (default 20
per operation, each sent with the three keys) for a longer run.

Two schemathesis checks are left out because they test claims the OpenAPI document does
not make, or that this harness invalidates on purpose:
- ``positive_data_acceptance`` expects every schema-valid body to be accepted, but the
  document cannot express rules such as "an ISO 4217 currency", "an IANA time zone",
  "a merchant key needs merchant_id" or "no member has this phone"; those are 4xx by design.
- ``negative_data_rejection`` expects every schema-invalid request to be refused, but the
  hooks below replace deliberately invalid path ids with real ones and always send a valid
  key. (Booleans, integers and dates are strict: ``kit.validation``.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from starlette.testclient import TestClient

from patron.app import create_app
from patron.config import get_settings
from patron.db import Database
from tests.api.operations import objects_of
from tests.conftest import World, auth

# The document is the same whatever the database; the requests go to `fuzz_app` below.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(get_settings(), Database("sqlite:///:memory:")))

FUZZ = settings(max_examples=int(os.environ.get("PATRON_FUZZ_EXAMPLES", "20")), deadline=None,
                derandomize=True, database=None, suppress_health_check=list(HealthCheck))
EXCLUDED_CHECKS = [positive_data_acceptance, negative_data_rejection]

# Real ids for path parameters, refreshed for every test by the `real_ids` fixture, so that
# most generated requests reach an existing object instead of a random UUID.
REAL_IDS: dict[str, list[str]] = {}
WEBHOOK_TOKENS = {"/v1/telephony/inbound": get_settings().telephony_secret,
                  "/v1/sms/inbound": get_settings().sms_inbound_token}


@schema.hook("flatmap_path_parameters")
def _real_path_ids(_context: Any, path_parameters: dict[str, Any]) -> Any:
    if not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    choices = {name: st.sampled_from([value, *REAL_IDS.get(name, [])])
               for name, value in path_parameters.items()}
    return st.fixed_dictionaries(choices)


@schema.hook("flatmap_query")
def _sometimes_signed(context: Any, query: dict[str, Any]) -> Any:
    # The signed webhooks authenticate with their secret; let the fuzzer past it at times.
    if context.operation is None or context.operation.path not in WEBHOOK_TOKENS:
        return st.just(query)
    signed = {**(query or {}), "token": WEBHOOK_TOKENS[context.operation.path]}
    return st.sampled_from([query, signed])


@pytest.fixture(scope="module")
def fuzz_app(database: Database) -> Any:
    return create_app(get_settings(), database)


@pytest.fixture
def real_ids(client: TestClient, database: Database,
             world: World) -> Iterator[dict[str, list[str]]]:
    """Objects of both merchants for the fuzzer to aim at (not the keys it authenticates
    with, nor the POS terminals behind them, so that those keep working)."""
    a = objects_of(client, database, world, world.a)
    tenants = (a, objects_of(client, database, world, world.b, beneath=[a]))
    REAL_IDS.clear()
    for objects in tenants:
        for name, value in objects.path_ids().items():
            REAL_IDS.setdefault(name, []).append(value)
    yield REAL_IDS
    REAL_IDS.clear()


@schema.parametrize()
@FUZZ
def test_fuzz_as_terminal_merchant_and_operator(case: Any, fuzz_app: Any, world: World,
                                                real_ids: dict[str, list[str]]) -> None:
    """Each generated request is sent with each key, the least powerful first (so that
    what the operator's may erase or revoke is still there for the others'): one
    generation, three callers."""
    for who, key in (("terminal", world.a.pos_key), ("merchant", world.a.merchant_key),
                     ("operator", world.operator_key)):
        try:
            case.call_and_validate(app=fuzz_app, headers=auth(key),
                                   excluded_checks=EXCLUDED_CHECKS)
        except Exception as failure:
            failure.add_note(f"sent with the {who}'s key")
            raise
