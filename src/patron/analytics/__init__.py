"""Read-only figures for merchants and the operator."""
