"""The vendored browser assets match their MANIFEST, and the API docs pages load nothing
from outside the package (machines are offline)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from patron.app import STATIC, VENDOR_URL

VENDOR = STATIC / "vendor"


def _manifest() -> dict[str, tuple[str, str, str, str]]:
    rows = {}
    for line in (VENDOR / "MANIFEST").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        path, package, version, licence, sha256 = line.split("\t")
        rows[path] = (package, version, licence, sha256)
    return rows


def test_the_manifest_lists_every_vendored_file_with_its_digest() -> None:
    manifest = _manifest()
    shipped = {str(path.relative_to(VENDOR)) for path in VENDOR.rglob("*")
               if path.is_file() and path.name != "MANIFEST"}
    assert shipped == set(manifest)
    for path, (package, version, licence, sha256) in manifest.items():
        assert package and re.fullmatch(r"\d+\.\d+\.\d+", version) and licence, path
        assert hashlib.sha256((VENDOR / path).read_bytes()).hexdigest() == sha256, path
    assert {(p, v) for p, v, _, _ in manifest.values()} == {("swagger-ui-dist", "5.35.0"),
                                                            ("redoc", "2.5.2")}


def test_the_manifest_versions_are_the_lockfiles() -> None:
    import json

    lock = json.loads((Path(__file__).resolve().parents[2] / "frontend" /
                       "package-lock.json").read_text())
    for package, version, _, _ in _manifest().values():
        assert lock["packages"][f"node_modules/{package}"]["version"] == version


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_the_docs_pages_refer_to_no_outside_address(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    addresses = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", response.text)
    addresses += re.findall(r"""url\s*:\s*['"]([^'"]+)['"]""", response.text)
    assert not [a for a in addresses if re.match(r"(?:https?:)?//", a)], addresses
    assert not re.search(r"(?:src|href)\s*=\s*[\"'](?:https?:)?//", response.text)
    for address in addresses:
        if address.startswith("/"):
            assert client.get(address).status_code == 200, address


def test_the_docs_load_the_vendored_files(client: TestClient) -> None:
    docs = client.get("/docs").text
    assert f"{VENDOR_URL}/swagger-ui/swagger-ui-bundle.js" in docs
    assert f"{VENDOR_URL}/redoc/redoc.standalone.js" in client.get("/redoc").text
    script = client.get(f"{VENDOR_URL}/swagger-ui/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert script.content == (VENDOR / "swagger-ui" / "swagger-ui-bundle.js").read_bytes()
