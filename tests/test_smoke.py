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
