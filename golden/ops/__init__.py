"""Golden op implementations, one module per family (real forms, docs/arithmetic.md)."""
