"""Personal data across areas: the member's export (docs/privacy.md).

Above every area that holds a member's data (it reads them all), below the boundaries
(endpoints, CLI, jobs) that call it; no domain area imports it (docs/architecture.md)."""
