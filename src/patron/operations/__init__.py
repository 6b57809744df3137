"""Register operations: operation events from POS registers and card-reader taps."""
