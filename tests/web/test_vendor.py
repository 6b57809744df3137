"""The vendored browser assets match their MANIFEST, and the API docs pages load nothing
from outside the package (machines are offline)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from patron.app import VENDOR_URL
from patron.web.render import STATIC

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
    assert {(p, v) for p, v, _, _ in manifest.values()} == {
        ("swagger-ui-dist", "5.35.0"), ("redoc", "2.5.2"), ("htmx.org", "2.0.11"),
        ("@alpinejs/csp", "3.17.4"), ("axe-core", "4.14.1")}


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


OUTSIDE = re.compile(r"""(?:src|href|action|url)\s*[=(:]\s*["']?(?:https?:)?//""", re.I)


def test_no_template_or_asset_of_the_pages_refers_to_an_outside_address() -> None:
    """The web app's own templates, scripts and styles load nothing from another host
    (machines are offline; the policy would refuse it too)."""
    web = STATIC.parent
    own = [*(web / "templates").glob("*.html"), *STATIC.glob("*.js"), *STATIC.glob("*.css")]
    assert len(own) > 10
    for path in own:
        assert not OUTSIDE.search(path.read_text()), path
    # The vendored scripts the pages load neither fetch nor import from another host.
    for vendored in ("htmx/htmx.min.js", "alpine/cdn.min.js"):
        text = (VENDOR / vendored).read_text()
        assert not re.search(r"""(?:import|fetch)\s*\(?\s*["']https?://""", text), vendored


def test_the_pages_files_are_cached_for_a_year_when_asked_for_by_their_digest(
        client: TestClient) -> None:
    from patron.web.render import static_url

    address = static_url("app.css")
    assert re.fullmatch(r"/static/app\.css\?v=[0-9a-f]{12}", address)
    cached = client.get(address)
    assert cached.status_code == 200
    assert cached.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert client.get("/static/app.css").headers["cache-control"] == "no-cache"
    assert "immutable" in client.get(f"{VENDOR_URL}/htmx/htmx.min.js").headers["cache-control"]
