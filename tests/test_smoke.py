from tests.conftest import auth


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_enrol_and_identify_by_number(client, world):
    enrolled = client.post("/v1/members", headers=auth(world.a.pos_key),
                           json={"phone": "03-1234-5678"})
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    assert body["member_number"].startswith("12345")
    found = client.post("/v1/identify", headers=auth(world.a.pos_key),
                        json={"barcode": body["member_number"]})
    assert found.status_code == 200, found.text
    assert found.json()["member_id"] == body["id"]


def test_an_app_that_served_requests_is_freed_when_dropped(database):
    """Nothing process-wide keeps an app alive (FastAPI caches every endpoint function it
    has seen: one made per app, closing over it, kept each app a process built)."""
    import gc
    import weakref

    from fastapi.testclient import TestClient

    from patron.app import create_app
    from patron.config import get_settings

    app = create_app(get_settings(), database)
    with TestClient(app) as client:
        for path in ("/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/v1/merchants"):
            assert client.get(path).status_code in (200, 401), path
    dropped = weakref.ref(app)
    del app, client
    gc.collect()
    assert dropped() is None
