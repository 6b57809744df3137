"""``patron.privacy`` reads every area, so no area may import it (docs/architecture.md):
only boundaries (endpoint modules, the app, CLI commands, jobs) do."""

from __future__ import annotations

import ast
from pathlib import Path

import patron

SOURCE = Path(patron.__file__).parent
BOUNDARIES = ("cli", "jobs", "web", "privacy")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_domain_area_imports_the_privacy_area() -> None:
    importers = []
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE)
        if relative.parts[0] in BOUNDARIES or path.name in ("endpoints.py", "app.py"):
            continue
        if any(name == "patron.privacy" or name.startswith("patron.privacy.")
               for name in imported_modules(path)):
            importers.append(str(relative))
    assert importers == []
    # The check sees imports at all: the endpoint that serves the export has one.
    assert "patron.privacy.export" in imported_modules(SOURCE / "members" / "endpoints.py")
