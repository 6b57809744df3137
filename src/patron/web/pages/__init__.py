"""The web app's routes, one module per part (docs/web.md)."""
