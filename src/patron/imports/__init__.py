"""History import (docs/imports.md)."""

MEMBERS_PATH = "/v1/imports/members"
PURCHASES_PATH = "/v1/imports/purchases"
# Their bodies are files, streamed to disk: the app's body limit is not theirs.
IMPORT_PATHS = (MEMBERS_PATH, PURCHASES_PATH)
