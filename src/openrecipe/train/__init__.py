"""Training stages: pretraining (our own loop), SFT and GRPO (TRL)."""
