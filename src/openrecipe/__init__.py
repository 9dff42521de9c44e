"""openrecipe: rerunnable, auditable recipes for open hybrid Mamba-2/attention releases.

Overview
--------
- ``recipe``   loads a recipe (YAML, ``extends:``, overrides), validates it and hashes stage views.
- ``stage``    the stage contract: verified inputs, atomic outputs, a deterministic manifest.
- ``manifest`` reading, writing and checking ``manifest.json`` files.
- ``data/``    acquisition, curation, blending, tokenizer training and packing.
- ``model/``   NemotronH models built from a recipe's model section.
- ``train/``   pretraining, SFT and GRPO.
- ``evaluate/`` lm-eval on local, pinned tasks.
- ``lineage/`` trace and verify.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
