"""Data stages: acquire, curate, blend, tokenizer, pack, and the reasoning-data generator."""
