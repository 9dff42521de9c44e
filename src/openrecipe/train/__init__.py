"""Training stages: pretraining (our own loop), SFT and GRPO (plain deterministic loops)."""
