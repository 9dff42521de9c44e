"""Lineage: trace an artifact back to raw sources, verify a run, push runs to DVC."""
