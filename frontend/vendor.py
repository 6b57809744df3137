"""Copy the built browser assets from node_modules/ into the package and write their MANIFEST.

Run after `npm ci` in this folder: `python frontend/vendor.py`. The MANIFEST lists each file
with its package, version, licence and SHA-256; tests/web/test_vendor.py checks it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR = HERE.parent / "src" / "patron" / "web" / "static" / "vendor"

# package -> (folder under vendor/, files of the package to ship)
FILES = {
    "swagger-ui-dist": ("swagger-ui", ["swagger-ui-bundle.js", "swagger-ui.css",
                                       "favicon-32x32.png", "oauth2-redirect.html",
                                       "LICENSE", "NOTICE"]),
    "redoc": ("redoc", ["bundles/redoc.standalone.js",
                        "bundles/redoc.standalone.js.LICENSE.txt", "LICENSE"]),
    # The pages' own interaction: htmx for requests, Alpine's CSP build (no eval) for state.
    "htmx.org": ("htmx", ["dist/htmx.min.js", "LICENSE"]),
    "@alpinejs/csp": ("alpine", ["dist/cdn.min.js"]),
    # Loaded by the accessibility tests only (tests/web/): never by a page.
    "axe-core": ("axe-core", ["axe.min.js", "LICENSE"]),
}


def main() -> None:
    lines = ["# path\tpackage\tversion\tlicence\tsha256"]
    for package, (folder, names) in FILES.items():
        source = HERE / "node_modules" / package
        meta = json.loads((source / "package.json").read_text())
        target = VENDOR / folder
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            copied = target / Path(name).name
            shutil.copyfile(source / name, copied)
            digest = hashlib.sha256(copied.read_bytes()).hexdigest()
            lines.append(f"{folder}/{copied.name}\t{package}\t{meta['version']}\t"
                         f"{meta['license']}\t{digest}")
    (VENDOR / "MANIFEST").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
