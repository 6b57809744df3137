"""No personal data and no secret reaches a log line."""

import logging

from patron.app import RedactQueryStrings
from tests.conftest import auth


def test_no_phone_or_email_in_any_log_line(client, world, caplog):
    caplog.set_level(logging.DEBUG)
    enrolled = client.post("/v1/members", headers=auth(world.a.pos_key),
                           json={"phone": "090-5555-6666", "email": "kei.sato@example.com"})
    assert enrolled.status_code == 201
    for body in ({"phone": "090-5555-6666"}, {"phone": "+81 90 5555 7777"},
                 {"barcode": enrolled.json()["member_number"]}):
        client.post("/v1/identify", headers=auth(world.a.pos_key), json=body)
    client.post("/v1/members", headers=auth(world.a.pos_key),
                json={"phone": "090-5555-6666"})  # refused as a duplicate
    logged = "\n".join(record.getMessage() for record in caplog.records)
    # The refusals were logged (so this test reads real log output) ...
    assert "refused POST /v1/identify: 404 member_not_found" in logged
    assert "refused POST /v1/members: 409 phone_already_registered" in logged
    # ... and no log line carries the personal data behind them.
    for needle in ("5555", "kei.sato", "example.com"):
        assert needle not in logged


def test_access_log_drops_query_strings():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "POST", "/v1/telephony/inbound?token=s3cret",
                                "1.1", 200), None)
    assert RedactQueryStrings().filter(record)
    assert "s3cret" not in record.getMessage()
    assert "/v1/telephony/inbound" in record.getMessage()
