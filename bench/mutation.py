"""Mutation score of the modules the project's claims rest on, with mutmut 3.

    make mutation                                   # every module below (hours on 2 cores)
    .venv-mutation/bin/python bench/mutation.py --only train/schedule.py --timeout 900

Each module is mutated on its own, in a scratch copy of the project (src/, tests/, workflow/,
recipes/, Snakefile, and a generated pyproject.toml holding the ``[tool.mutmut]`` settings), so
the checkout is never touched and an interrupted run leaves nothing behind. mutmut copies that
tree to ``mutants/`` and runs each mutant against only the tests that call the mutated function
(as measured by its first, clean run of the module's test files below), forking from a warmed
process (``forkserver``: torch is not fork-safe after use).

Writes results/bench/mutation.json: per module the mutants, killed, survived, timeouts and the
rest, the survivors (mutmut's name and diff), the equivalent mutants argued in ``EQUIVALENT``
(left out of the score's denominator), the wall time and the date. Modules not rerun keep their
entry from the previous file, each with its own date, so a campaign can be run piecewise;
``partial`` is true while any module of ``MODULES`` has no entry.

``--rerun`` runs, for each module named, only the mutants its entry lists as surviving, timed out
or not checked (an interrupted run records the names it did not reach; ``--survivors-only``
leaves those out, to recheck the survivors first), and folds their new results into the entry (``reruns`` says when and how many): the way to resume a module and to
measure it again after adding tests, without paying for the mutants already killed (tests are
only ever added, so a killed mutant stays killed).

mutmut's per-mutant limit is wall-clock time; ``TIMEOUT_MULTIPLIER`` is raised from its default
so that a niced campaign on a shared machine does not count starved mutants as caught.

Runs outside ``make test`` and CI (the tests of one module run once per mutant).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "bench" / "mutation.json"
U = "tests/unit/"

# Module (under src/openrecipe/) -> the unit tests that stand behind it.
MODULES: dict[str, tuple[str, ...]] = {
    "manifest.py": (
        U + "test_manifest.py",
        U + "test_stage.py",
        U + "test_manifest_mutants.py",
    ),
    "stage.py": (U + "test_stage.py", U + "test_manifest.py", U + "test_stage_mutants.py"),
    "lineage/certify.py": (
        U + "test_audit.py",
        U + "test_certify_counts.py",
        U + "test_certify_markdown.py",
    ),
    "lineage/verify.py": (
        U + "test_audit.py",
        U + "test_stage.py",
        U + "test_parallel_hash.py",
        U + "test_verify_mutants.py",
    ),
    "lineage/parallel_hash.py": (U + "test_parallel_hash.py", U + "test_parallel_hash_mutants.py"),
    "lineage/trace.py": (
        U + "test_audit.py",
        U + "test_stage.py",
        U + "test_import_workflow.py",
        U + "test_trace_metric.py",
        U + "test_trace_mutants.py",
    ),
    "lineage/lock.py": (
        U + "test_audit.py",
        U + "test_signed_release.py",
        U + "test_lock_mutants.py",
    ),
    "data/blend.py": (U + "test_blend.py", U + "test_blend_outputs.py"),
    "data/pack.py": (U + "test_pack.py", U + "test_pack_mutants.py"),
    "data/minhash_lsh.py": (U + "test_minhash_lsh.py", U + "test_minhash_lsh_mutants.py"),
    "model/precision/formats.py": (
        U + "test_nvfp4.py",
        U + "test_fp8.py",
        U + "test_formats_mutants.py",
    ),
    "model/precision/nvfp4.py": (U + "test_nvfp4.py", U + "test_nvfp4_mutants.py"),
    "model/precision/fp8.py": (U + "test_fp8.py", U + "test_fp8_mutants.py"),
    "model/precision/linear.py": (
        U + "test_precision_linear.py",
        U + "test_precision_linear_mutants.py",
    ),
    "train/schedule.py": (U + "test_schedule.py",),
    "train/sft.py": (U + "test_sft.py", U + "test_sft_mutants.py"),
    "train/rl.py": (U + "test_rl.py",),
    "train/grpo_loss.py": (U + "test_rl.py",),
    "train/sft_samples.py": (
        U + "test_sft.py",
        U + "test_certify_counts.py",
        U + "test_sft_samples_mutants.py",
    ),
}

# mutmut mutant name -> why no test can tell it from the original (left out of the score).
# The names are mutmut 3.8.1's numbering of the code as it stands; recheck them after an edit.
_CPU_SCALAR = "a 0-dim tensor made on the CPU instead of on amax's device: torch treats a 0-dim CPU tensor as a scalar in arithmetic and torch.where with a tensor of any device, so the scale comes out on amax's device with the same value either way (checked on the meta device; the only cost is a host tensor)."
_EMPTY_AMAX_DTYPE = (
    "the zero amax of an empty tensor made in torch's default dtype instead of fp32: "
    "current_scale starts with amax.float(), so the scale is fp32 either way, and amax itself "
    "is never returned."
)
_WIDTH_ZIP = (
    "the zip that sizes the batch made non-strict: completion_logprobs zips prompts and "
    "completions twice, and the loop's strict zip raises the same ValueError (zip() argument 2 "
    "is shorter/longer than argument 1) before anything is returned, so a length mismatch fails "
    "alike."
)
_LOOP_ZIP = (
    "the loop's zip made non-strict: the strict zip that sizes the batch (width) has already "
    "raised the same ValueError on a length mismatch, so the loop only ever sees equal lengths."
)
_ASCII_JSON = (
    "json.dumps escapes every non-ASCII character (ensure_ascii defaults to True), so the text "
    "is ASCII and the locale's default encoding (an ASCII superset) writes the same bytes."
)
_VERDICT_ZIP = (
    "the zip of verdicts and texts made non-strict: Verifier.score returns one verdict per "
    "text (it zips completions and golds strictly, and golds has one answer per rollout), so "
    "the two lists always have the same length."
)
_REWARD_ZIP = (
    "the zip of correctness and thinking counts made non-strict: both lists are built one "
    "entry per rollout, so they always have the same length."
)
_PAD_DTYPE = (
    "the padded id matrix made without dtype=torch.long: torch.full infers int64 from an int "
    "fill value, and pad_id is the tokenizer's int pad_token_id, so the tensor is the same."
)
_NO_ATTENTION_MASK = (
    "the attention mask not passed to the model: sequences are right-padded and the model is "
    "causal (attention and Mamba scan), so every real position sees only earlier real tokens "
    "either way; the mask changes only the pad positions' outputs, which `logp * mask` zeroes."
)

_UTF8_CASE = (
    'encoding="utf-8" -> "UTF-8": Python looks codecs up case-insensitively (the same codec).'
)
_NO_OUTPUTS_PREFETCH = (
    "the mutant differs only for a manifest without an outputs key, where it gives None "
    "instead of {}; isinstance(None, dict) is false, so _listed_outputs returns None, which "
    "prefetch_stage_dir's `or {}` turns into the same empty prefetch as the original's {}."
)

EQUIVALENT: dict[str, str] = {
    "openrecipe.model.precision.linear.xǁPrecisionLinearǁset_rng_state__mutmut_2": (
        "`generator(None)`: on the CPU the recreated generator is a CPU generator, so the state set on it is the one the next forward reuses (generator(cpu) finds the device equal); as generator_5, only a GPU could tell them apart, and CI has none."
    ),
    "openrecipe.model.precision.linear.xǁ_QuantizedLinearFnǁbackward__mutmut_29": (
        "`.to(x.dtype)` -> `.to(None)`: autograd casts a custom Function's returned gradient to its input's dtype (validate_outputs in torch's autograd engine), so x.grad has x's dtype either way (test_gradients_come_back_in_the_parameters_and_inputs_dtypes checks it)."
    ),
    "openrecipe.model.precision.linear.xǁ_QuantizedLinearFnǁbackward__mutmut_39": (
        "as _29, for dw and the weight's dtype."
    ),
    "openrecipe.model.precision.linear.xǁ_QuantizedLinearFnǁbackward__mutmut_48": (
        "as _29, for db and the bias's dtype."
    ),
    "openrecipe.model.precision.linear.xǁPrecisionLinearǁfrom_linear__mutmut_4": (
        "from_linear builds the layer on the meta device and then assigns linear.weight and linear.bias; assigning the bias Parameter (or None) registers it whatever bias flag the constructor got, so `bias=None` here changes nothing the caller can see."
    ),
    "openrecipe.model.precision.linear.xǁPrecisionLinearǁfrom_linear__mutmut_11": (
        "as _4: the constructor's bias flag omitted (default True) is overwritten by `new.bias = linear.bias`."
    ),
    "openrecipe.model.precision.linear.xǁPrecisionLinearǁfrom_linear__mutmut_16": (
        "as _4: `linear.bias is None` as the flag, overwritten by the assignment."
    ),
    "openrecipe.model.precision.linear.xǁPrecisionLinearǁfrom_linear__mutmut_8": (
        "`device='meta'` -> `device=None`: the placeholder weight and bias are allocated on the CPU instead of meta and replaced at once by the shared Parameters; only a transient allocation differs."
    ),
    "openrecipe.model.precision.linear.xǁPrecisionLinearǁfrom_linear__mutmut_15": (
        "as _8: device omitted."
    ),
    "openrecipe.model.precision.linear.xǁPrecisionLinearǁgenerator__mutmut_5": (
        "`torch.Generator(device=device)` -> `device=None`: on the CPU, the only device this suite runs on, both are the CPU generator. On a GPU it would hand a CPU generator to CUDA tensors; that case cannot be tested here (no GPU in CI)."
    ),
    "openrecipe.model.precision.linear.xǁ_QuantizedLinearFnǁbackward__mutmut_45": (
        "`has_bias and needs_input_grad[2]` -> `or`: with no bias, needs_input_grad[2] is False too (None needs no gradient), so both are False; with a frozen bias the extra gradient returned for it is discarded by autograd."
    ),
    "openrecipe.data.minhash_lsh.x_cluster__mutmut_29": (
        "the dummy `MinHash.bulk([set()], ..., seed=None)` only reads `.scheme`, the hash scheme name (affine32 for every seed and num_perm in datasketch 1.x); the seed never reaches a signature."
    ),
    "openrecipe.data.minhash_lsh.x_cluster__mutmut_31": (
        "as _29: the dummy bulk's num_perm (default 128) does not change `.scheme`."
    ),
    "openrecipe.data.minhash_lsh.x_cluster__mutmut_32": (
        "as _29: the dummy bulk's seed (default 1) does not change `.scheme`."
    ),
    "openrecipe.data.minhash_lsh.x_cluster__mutmut_35": (
        "`MinHash(num_perm=None, hashvalues=row)`: datasketch takes num_perm from len(hashvalues) when hashvalues are given, which is params.num_perm (the matrix's width)."
    ),
    "openrecipe.data.minhash_lsh.x_cluster__mutmut_36": (
        "`seed=None` on every rebuilt signature: all of them carry the same seed, so `jaccard` (which only refuses differing seeds) and MinHashLSH (which never reads it) behave alike; the values come from the matrix."
    ),
    "openrecipe.data.minhash_lsh.x_cluster__mutmut_39": (
        "as _35: num_perm omitted, taken from hashvalues."
    ),
    "openrecipe.data.minhash_lsh.x_cluster__mutmut_40": (
        "as _36: seed omitted (datasketch's default 1) on every rebuilt signature alike."
    ),
    "openrecipe.data.minhash_lsh.x_shingles__mutmut_22": (
        "`len(units) <= ngram` -> `<`: at exactly ngram units the loop yields range(1), the one n-gram joined whole: the same single shingle the short-text branch returns."
    ),
    "openrecipe.data.minhash_lsh.x_shingles__mutmut_26": (
        "'utf-8' -> 'UTF-8': the same codec name to Python."
    ),
    "openrecipe.data.minhash_lsh.x_shingles__mutmut_31": ("as _26."),
    "openrecipe.stage.x_run_stage__mutmut_49": (
        "`recipe.get('resources.threads') or 2` -> `or 3`: the fallback is unreachable, the "
        "schema gives resources.threads a default (2) and a minimum of 1 and load_recipe fills "
        "defaults, so the value read is never false."
    ),
    "openrecipe.stage.x_run_stage__mutmut_69": (
        "`tmp.mkdir(parents=True)` -> `parents=None`: tmp's parent is out.parent, made on the "
        "line before, so there is never a missing parent to create."
    ),
    "openrecipe.stage.x_run_stage__mutmut_70": (
        "`tmp.mkdir(parents=True)` -> `parents=False`: as _69, out.parent exists already."
    ),
    "openrecipe.manifest.x_write_json_atomic__mutmut_9": (
        "ensure_ascii=False -> None: json.dumps only tests the flag's truth (`if ensure_ascii:` "
        "in json.encoder), and None is false like False."
    ),
    "openrecipe.manifest.x_write_json_atomic__mutmut_26": (
        'encoding="utf-8" -> "UTF-8": Python looks codecs up case-insensitively (the same codec).'
    ),
    "openrecipe.manifest.x_read_manifest__mutmut_9": (
        'encoding="utf-8" -> "UTF-8": Python looks codecs up case-insensitively (the same codec).'
    ),
    "openrecipe.model.precision.formats.x__step__mutmut_7": (
        "`mag < 2` -> `mag <= 2`: only |x| = 2 exactly changes binade, spacing 1 -> 0.5; "
        "round gives round(2 / 0.5) * 0.5 = 2 = round(2 / 1) * 1, and stochastic rounding has "
        "low = 2 = |x| in both, so it never rounds up (u * h < 0 is false)."
    ),
    "openrecipe.model.precision.formats.x__step__mutmut_16": (
        "`mag < 4` -> `mag <= 4`: only |x| = 4 exactly changes spacing 2 -> 1; both give 4 "
        "(round(4 / 1) * 1 = round(4 / 2) * 2), and stochastic rounding has low = 4 = |x|."
    ),
    "openrecipe.model.precision.formats.x_stochastic_round_e2m1__mutmut_27": (
        "`u * h < mag - low` -> `<=`: they differ only when the fp32 uniform u (a multiple of "
        "2^-24) equals (|x| - low) / h exactly, probability 2^-24 per element; a test that "
        "meets it needs ~2^24 draws per element (or a hand-built Mersenne-Twister state), "
        "and the hardware it emulates rounds with 1/256 granularity anyway (see the docstring)."
    ),
    "openrecipe.model.precision.fp8.x_current_scale__mutmut_10": "`one` " + _CPU_SCALAR,
    "openrecipe.model.precision.fp8.x_current_scale__mutmut_13": "`one` " + _CPU_SCALAR,
    "openrecipe.model.precision.fp8.x_current_scale__mutmut_18": "`fp8_max` " + _CPU_SCALAR,
    "openrecipe.model.precision.fp8.x_current_scale__mutmut_21": "`fp8_max` " + _CPU_SCALAR,
    "openrecipe.model.precision.fp8.x_quantize_fp8__mutmut_17": _EMPTY_AMAX_DTYPE,
    "openrecipe.model.precision.fp8.x_quantize_fp8__mutmut_20": _EMPTY_AMAX_DTYPE,
    "openrecipe.manifest.x_find_stage_dir__mutmut_3": (
        "`path if path.is_dir() else path.parent` -> always `path`: for a file (or a path that "
        "does not exist) the extra first candidate is path itself, and path/manifest.json is "
        "never a file there, so the search reaches the same parent."
    ),
    "openrecipe.train.schedule.x_wsd_lr__mutmut_47": (
        "`done <= warmup` -> `done < warmup`: at done == warmup the warmup branch returns "
        "lr * warmup / warmup and the hold branch lr, the same rate (up to the one rounding "
        "of lr * warmup); every other step takes the same branch in both."
    ),
    "openrecipe.train.rl.x__rollouts__mutmut_10": (
        "reasoning=True dropped from encode_prompt: its default is reasoning=True."
    ),
    "openrecipe.train.rl.x__step__mutmut_6": (
        "skip_special_tokens=False dropped from tokenizer.decode: False is its default "
        "(transformers' PreTrainedTokenizerBase.decode)."
    ),
    "openrecipe.train.rl.x__step__mutmut_17": "strict=None: " + _VERDICT_ZIP,
    "openrecipe.train.rl.x__step__mutmut_20": "strict dropped: " + _VERDICT_ZIP,
    "openrecipe.train.rl.x__step__mutmut_25": "strict=False: " + _VERDICT_ZIP,
    "openrecipe.train.rl.x__step__mutmut_37": "strict=None: " + _REWARD_ZIP,
    "openrecipe.train.rl.x__step__mutmut_40": "strict dropped: " + _REWARD_ZIP,
    "openrecipe.train.rl.x__step__mutmut_41": "strict=False: " + _REWARD_ZIP,
    "openrecipe.lineage.certify.x__doc_meta__mutmut_15": 'encoding="utf-8" -> "UTF-8": Python looks codecs up case-insensitively (the same codec).',
    "openrecipe.lineage.certify.x_verify_certificate__mutmut_47": 'encoding="utf-8" -> "UTF-8": Python looks codecs up case-insensitively (the same codec).',
    "openrecipe.lineage.certify.x_write_certificate__mutmut_33": 'encoding="utf-8" -> "UTF-8": Python looks codecs up case-insensitively (the same codec).',
    "openrecipe.lineage.certify.x_pretrain_tokens__mutmut_33": 'encoding="utf-8" -> "UTF-8": Python looks codecs up case-insensitively (the same codec).',
    "openrecipe.lineage.certify.x_pretrain_tokens__mutmut_85": 'encoding="utf-8" -> "UTF-8": Python looks codecs up case-insensitively (the same codec).',
    "openrecipe.lineage.certify.x_pretrain_tokens__mutmut_88": (
        "the sidecar zip's strict=False -> None: zip only tests the flag's truth, None is false."
    ),
    "openrecipe.lineage.certify.x_pretrain_tokens__mutmut_91": (
        "the sidecar zip's strict=False dropped: False is zip's default."
    ),
    "openrecipe.lineage.certify.x_sft_tokens__mutmut_79": (
        "`labels[1:n]` -> `labels[2:n]`: labels[1] is a prompt position, and encode_sft masks "
        "the whole prompt (the chat template makes it at least `<|im_start|>user\\n...`, "
        "several tokens), so it is always -100 and never counted either way."
    ),
    "openrecipe.train.rl.x_run__mutmut_19": (
        "the reference copy made with requires_grad_(True): the reference only ever runs "
        "under torch.no_grad() and the optimizer holds the policy's parameters alone, so no "
        "gradient reaches it either way."
    ),
    "openrecipe.train.rl.x_run__mutmut_134": "metrics.jsonl written with encoding=None: "
    + _ASCII_JSON,
    "openrecipe.train.rl.x_run__mutmut_136": "metrics.jsonl written without encoding: "
    + _ASCII_JSON,
    "openrecipe.train.rl.x_run__mutmut_150": (
        'encoding="utf-8" -> "UTF-8": Python looks codecs up case-insensitively (the same codec).'
    ),
    "openrecipe.model.precision.nvfp4.x__scales_and_values__mutmut_1": "every fp32 constant of the scale arithmetic: "
    + _CPU_SCALAR,
    "openrecipe.model.precision.nvfp4.x__scales_and_values__mutmut_7": "the 1 of S_dec = 1 / S_enc: "
    + _CPU_SCALAR,
    "openrecipe.model.precision.nvfp4.x__scales_and_values__mutmut_14": "the 1 of fl(1/6): "
    + _CPU_SCALAR,
    "openrecipe.model.precision.nvfp4.x__scales_and_values__mutmut_19": "the 6 of fl(1/6): "
    + _CPU_SCALAR,
    "openrecipe.model.precision.nvfp4.x__scales_and_values__mutmut_33": "the 1 of the reciprocal scale: "
    + _CPU_SCALAR,
    "openrecipe.model.precision.nvfp4.x_dequant_scale__mutmut_4": "the 1 of fl(1/2688): "
    + _CPU_SCALAR,
    "openrecipe.model.precision.nvfp4.x_dequant_scale__mutmut_9": "the 2688 of fl(1/2688): "
    + _CPU_SCALAR,
    "openrecipe.model.precision.nvfp4.x_encode_scale__mutmut_3": "`one`: " + _CPU_SCALAR,
    "openrecipe.model.precision.nvfp4.x_encode_scale__mutmut_14": "the 2688 of S_enc: "
    + _CPU_SCALAR,
    "openrecipe.model.precision.nvfp4.x__pad_to_block__mutmut_25": "`F.pad(x, pad) if any(pad) else x` -> always F.pad: an all-zero pad returns a tensor equal to x, and no caller writes into it or relies on its identity.",
    "openrecipe.model.precision.nvfp4.x_dequantize__mutmut_40": "`slice(0, n)` -> `slice(None, n)`: the same slice.",
    "openrecipe.model.precision.nvfp4.x_dequantize__mutmut_42": "`slice(0, n)` -> `slice(n)`: the same slice.",
    "openrecipe.model.precision.nvfp4.x_hadamard_matrix__mutmut_14": "`range(4)` -> `range(5)`: i & j < 16 has no bit 4, so the added term is 0 and the popcount the same.",
    "openrecipe.model.precision.nvfp4.x_hadamard_matrix__mutmut_24": "the sign vector built as int64 instead of fp32: `signs[:, None] * h` promotes to the fp32 of h, with the same values +-1.",
    "openrecipe.model.precision.nvfp4.x_hadamard_matrix__mutmut_26": "as _24 (dtype dropped: int64 signs, promoted by the fp32 h).",
    "openrecipe.model.precision.nvfp4.x_hadamard_matrix__mutmut_32": "`signs * h` -> `signs / h`: every entry of h is +1 or -1, and x / +-1 == x * +-1 exactly.",
    "openrecipe.model.precision.nvfp4.x_random_hadamard_transform__mutmut_12": "`reshape(*shape[:-1], -1, 16)` -> `reshape(-1, 16)`: either way the chunks are the same consecutive 16-element runs of the contiguous last dim, each multiplied alone, and the product is reshaped back to xb.shape.",
    "openrecipe.model.precision.nvfp4.x_random_hadamard_transform__mutmut_15": "`shape[:-1]` -> `shape[:+1]`: as _12, a different grouping of the same 16-element runs.",
    "openrecipe.model.precision.nvfp4.x_random_hadamard_transform__mutmut_16": "`shape[:-1]` -> `shape[:-2]`: as _12, a different grouping of the same 16-element runs.",
    "openrecipe.model.precision.nvfp4.x_quantize_nvfp4_2d_weight__mutmut_43": "stochastic=False -> None: _scales_and_values only tests its truth (`if stochastic`), and None is false like False.",
    "openrecipe.data.blend.x__read_docs__mutmut_8": 'encoding="utf-8" -> "UTF-8": Python looks codecs up case-insensitively (the same codec).',
    "openrecipe.data.blend.x__write_jsonl__mutmut_12": 'encoding="utf-8" -> "UTF-8": Python looks codecs up case-insensitively (the same codec).',
    "openrecipe.data.blend.x_run__mutmut_109": 'encoding="utf-8" -> "UTF-8": Python looks codecs up case-insensitively (the same codec).',
    "openrecipe.data.blend.x__write_jsonl__mutmut_18": "ensure_ascii=False -> None: json.dumps only tests the flag's truth, and None is false like False.",
    "openrecipe.data.blend.x_run__mutmut_99": "ensure_ascii=False -> None: json.dumps only tests the flag's truth, and None is false like False.",
    "openrecipe.data.blend.x__write_jsonl__mutmut_4": 'newline="\\n" -> None: None translates "\\n" to os.linesep, which is "\\n" on the POSIX systems the project runs on (Linux; it differs only on Windows).',
    "openrecipe.data.blend.x__write_jsonl__mutmut_8": 'newline="\\n" dropped: as _4, the default None writes os.linesep, "\\n" on POSIX.',
    "openrecipe.train.grpo_loss.x_completion_logprobs__mutmut_6": "strict=None: " + _WIDTH_ZIP,
    "openrecipe.train.grpo_loss.x_completion_logprobs__mutmut_9": "strict dropped: " + _WIDTH_ZIP,
    "openrecipe.train.grpo_loss.x_completion_logprobs__mutmut_10": "strict=False: " + _WIDTH_ZIP,
    "openrecipe.train.grpo_loss.x_completion_logprobs__mutmut_16": "dtype=None: " + _PAD_DTYPE,
    "openrecipe.train.grpo_loss.x_completion_logprobs__mutmut_19": "dtype dropped: " + _PAD_DTYPE,
    "openrecipe.train.grpo_loss.x_completion_logprobs__mutmut_32": "strict=None: " + _LOOP_ZIP,
    "openrecipe.train.grpo_loss.x_completion_logprobs__mutmut_35": "strict dropped: " + _LOOP_ZIP,
    "openrecipe.train.grpo_loss.x_completion_logprobs__mutmut_36": "strict=False: " + _LOOP_ZIP,
    "openrecipe.train.grpo_loss.x_completion_logprobs__mutmut_57": (
        "attention_mask=None: " + _NO_ATTENTION_MASK
    ),
    "openrecipe.train.grpo_loss.x_completion_logprobs__mutmut_59": (
        "attention_mask dropped: " + _NO_ATTENTION_MASK
    ),
    "openrecipe.lineage.parallel_hash.x__sha256__mutmut_12": (
        'hashlib.file_digest(handle, "sha256") -> "SHA256": file_digest passes a name to '
        "hashlib.new, which looks it up in OpenSSL (EVP_get_digestbyname), and OpenSSL's digest "
        "names are case-insensitive: the same SHA-256 (and test_parallel_hash checks every "
        "hash against openrecipe.hashing's)."
    ),
    "openrecipe.lineage.parallel_hash.xǁFileHasherǁclose__mutmut_3": (
        "shutdown(wait=True, cancel_futures=True) -> wait dropped: True is "
        "ThreadPoolExecutor.shutdown's default for wait."
    ),
    "openrecipe.lineage.verify.x__audit_file_problems__mutmut_5": _UTF8_CASE,
    "openrecipe.lineage.verify.x__listed_outputs__mutmut_3": '`.get("outputs", {})` -> '
    '`.get("outputs", None)`: ' + _NO_OUTPUTS_PREFETCH,
    "openrecipe.lineage.verify.x__listed_outputs__mutmut_5": '`.get("outputs", {})` -> '
    '`.get("outputs")`: ' + _NO_OUTPUTS_PREFETCH,
    "openrecipe.lineage.verify.x__results_consumer__mutmut_11": (
        "results/<r> returned even without a manifest: the walk only reads that consumer's "
        "manifest (it is never checked, check=False), read_manifest raises on the missing "
        "file and the walk skips it, so nothing is collected from it either way; and a "
        "directory without a manifest is never among the stage directories walked."
    ),
    "openrecipe.lineage.lock.x__refuse_uncommitted__mutmut_15": _UTF8_CASE,
    "openrecipe.lineage.trace.x__run_info__mutmut_5": _UTF8_CASE,
    "openrecipe.lineage.trace.x_recipe_line__mutmut_16": _UTF8_CASE,
    "openrecipe.lineage.trace.x_recipe_line__mutmut_8": (
        "an absolute origin joined to the project (`project / path`) instead of taken as is: "
        "pathlib's `/` with an absolute right-hand side returns that absolute path, so the "
        "same file is read."
    ),
    "openrecipe.data.pack.x__write_sequences__mutmut_22": _UTF8_CASE,
    "openrecipe.data.pack.x_tokenize_streams__mutmut_13": (
        "a language stream checked against expected=None instead of its code: iter_stream then "
        "expects the file's stem, and stream_path puts lang:<code> at streams/lang/<code>.jsonl, "
        "whose stem is <code>: the same check."
    ),
    "openrecipe.data.pack.x__write_sequences__mutmut_36": (
        "ensure_ascii=False -> None: json.dumps only tests the flag's truth, and None is false "
        "like False."
    ),
    "openrecipe.train.sft_samples.x_encode__mutmut_7": (
        "reasoning=False -> None for an off sample: encode_sft hands it to encode_prompt and "
        "messages, which only test its truth (system_prompt: `REASONING_ON if reasoning else "
        "REASONING_OFF`), and None is false like False."
    ),
    "openrecipe.train.sft_samples.x_encode__mutmut_35": (
        "reasoning=True dropped from encode_sft: its default is reasoning=True."
    ),
    "openrecipe.train.grpo_loss.x_completion_logprobs__mutmut_87": (
        "`(index + 1).clamp(max=width - 1)` -> `max=width + 1`: neither bound ever binds; at a "
        "completion token index + 1 <= len(prompt + completion) - 1 <= width - 1, and at a pad "
        "position index is 0, so index + 1 = 1 <= width - 1 (a prompt has at least one token "
        "and a padded row exists only beside a non-empty completion, so width >= 2)."
    ),
}

# mutmut's exit codes per mutant (mutmut.stats.status_by_exit_code), folded into our columns.
_STATUS = {1: "killed", 3: "killed", 0: "survived", 36: "timeout", -24: "timeout", 24: "timeout"}
_STATUS |= {152: "timeout", 255: "timeout", 5: "no_tests", 33: "no_tests", 34: "skipped"}
_STATUS |= {37: "killed", -11: "other", -9: "other", 2: "not_checked"}

TIMEOUT_MULTIPLIER = 60.0

COPIED = ("src", "tests", "workflow", "recipes", "Snakefile")


def _pyproject(module: str, tests: tuple[str, ...]) -> str:
    def toml_list(items) -> str:
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"

    return "\n".join(
        [
            "[tool.mutmut]",
            'source_paths = ["src"]',
            f"only_mutate = {toml_list(['src/openrecipe/' + module])}",
            f"pytest_add_cli_args_test_selection = {toml_list(tests)}",
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-m", "not e2e and not gpu"]',
            f"also_copy = {toml_list(COPIED[2:])}",
            'process_isolation = "forkserver"',
            # mutmut's per-mutant limit is wall-clock, (test time + constant) * multiplier * 2;
            # a niced run on a busy machine is starved for minutes, so its default 15 marked
            # mutants "timeout" (= caught) that had merely waited for a core.
            f"timeout_multiplier = {TIMEOUT_MULTIPLIER}",
            "use_git_change_detection = false",
            "use_setproctitle = false",
            "",
            "[tool.pytest.ini_options]",
            'testpaths = ["tests"]',
            'markers = ["e2e: end to end", "gpu: needs a CUDA device"]',
            "",
        ]
    )


def _workspace(module: str, tests: tuple[str, ...]) -> Path:
    work = Path(tempfile.mkdtemp(prefix="openrecipe-mutation-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for rel in COPIED:
        source, target = ROOT / rel, work / rel
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (work / "pyproject.toml").write_text(_pyproject(module, tests), encoding="utf-8")
    return work


def _mutmut(work: Path, args: list[str], timeout: float | None) -> tuple[int | None, str]:
    """Run ``python -m mutmut ARGS`` in ``work``; past ``timeout`` it is interrupted (mutmut
    saves each mutant's result as it comes, so what finished is kept)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env |= {"MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mutmut", *args],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
        return proc.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        return None, output


def _measure(
    module: str, timeout: float | None, children: int, keep: bool, names: list[str] | None = None
) -> dict:
    """Mutate ``module`` and run its tests against every mutant, or only against ``names``
    (the others are then reported as not checked; ``_merge`` folds them into the previous
    entry)."""
    tests = MODULES[module]
    work = _workspace(module, tests)
    start = time.perf_counter()
    try:
        args = ["run", "--max-children", str(children), *(names or [])]
        code, output = _mutmut(work, args, timeout)
        wall = time.perf_counter() - start
        meta_path = work / "mutants" / "src" / "openrecipe" / (module + ".meta")
        if not meta_path.is_file():
            return {"error": "mutmut produced no results", "output_tail": output[-3000:]}
        exit_codes = json.loads(meta_path.read_text(encoding="utf-8"))["exit_code_by_key"]
        counts = dict.fromkeys(
            ("killed", "survived", "timeouts", "no_tests", "not_checked", "other"), 0
        )
        survivors, equivalent, unchecked, timed_out, untested, status_of = [], [], [], [], [], {}
        for name, exit_code in sorted(exit_codes.items()):
            status = "not_checked" if exit_code is None else _STATUS.get(exit_code, "other")
            status = "timeouts" if status == "timeout" else status
            status_of[name] = status
            if status == "survived" and name in EQUIVALENT:
                equivalent.append({"name": name, "why": EQUIVALENT[name]})
                continue
            counts[status] += 1
            if status == "not_checked":
                unchecked.append(name)
            if status == "timeouts":
                timed_out.append(name)
            if status == "no_tests":
                untested.append(name)
            if status == "survived":
                _, diff = _mutmut(work, ["show", name], 120)
                survivors.append({"name": name, "diff": diff.strip().splitlines()[1:]})
        caught = counts["killed"] + counts["timeouts"]
        checked = caught + counts["survived"]
        return {
            "tests": list(tests),
            "mutants": len(exit_codes),
            **counts,
            "equivalent": equivalent,
            "score": round(caught / checked, 4) if checked else None,
            "finished": code == 0 and counts["not_checked"] == 0,
            "wall_s": round(wall, 1),
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "survivors": survivors,
            "not_checked_names": unchecked,
            "timeout_names": timed_out,
            "no_tests_names": untested,
            "_status_of": status_of,
        }
    finally:
        if keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _merge(previous: dict, rerun: dict, names: list[str]) -> dict:
    """``previous`` with the mutants ``names`` (its survivors and unchecked mutants) replaced by
    their result in ``rerun``. Sound because a rerun only follows added tests: a mutant the
    previous run killed stays killed (the tests that killed it are still there)."""
    status_of = rerun["_status_of"]
    old = {s["name"]: "survived" for s in previous.get("survivors", [])}
    old |= dict.fromkeys(previous.get("not_checked_names", []), "not_checked")
    old |= dict.fromkeys(previous.get("timeout_names", []), "timeouts")
    old |= dict.fromkeys(previous.get("no_tests_names", []), "no_tests")
    old |= {e["name"]: "survived" for e in previous.get("equivalent", [])}
    merged = dict(previous)
    for name in names:
        before, after = old[name], status_of.get(name, "not_checked")
        if before == "survived" and any(e["name"] == name for e in previous.get("equivalent", [])):
            merged["equivalent"] = [e for e in merged["equivalent"] if e["name"] != name]
        else:
            merged[before] -= 1
        if after == "survived" and name in EQUIVALENT:
            merged["equivalent"] = [
                *merged.get("equivalent", []),
                {"name": name, "why": EQUIVALENT[name]},
            ]
        else:
            merged[after] += 1
    rerun_survivors = {s["name"]: s for s in rerun["survivors"]}
    merged["survivors"] = [
        rerun_survivors[s["name"]] if s["name"] in names else s
        for s in previous.get("survivors", [])
        if s["name"] not in names or s["name"] in rerun_survivors
    ] + [
        s
        for n, s in rerun_survivors.items()
        if n not in {p["name"] for p in previous.get("survivors", [])}
    ]
    merged["timeout_names"] = sorted(
        {n for n in previous.get("timeout_names", []) if n not in names}
        | {n for n in names if status_of.get(n) == "timeouts"}
    )
    merged["no_tests_names"] = sorted(
        {n for n in previous.get("no_tests_names", []) if n not in names}
        | {n for n in names if status_of.get(n) == "no_tests"}
    )
    merged["not_checked_names"] = sorted(
        {n for n in previous.get("not_checked_names", []) if n not in names}
        | {n for n in names if status_of.get(n, "not_checked") == "not_checked"}
    )
    caught = merged["killed"] + merged["timeouts"]
    checked = caught + merged["survived"]
    merged["score"] = round(caught / checked, 4) if checked else None
    merged["finished"] = merged["not_checked"] == 0
    merged["tests"] = rerun["tests"]
    merged["reruns"] = [
        *previous.get("reruns", []),
        {
            "date": rerun["date"],
            "mutants": len(names),
            "killed_now": sum(status_of.get(n) in ("killed", "timeouts") for n in names),
            "wall_s": rerun["wall_s"],
        },
    ]
    merged["date"] = rerun["date"]
    return merged


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="modules, as keys of MODULES (default: all)")
    parser.add_argument("--timeout", type=float, help="seconds per module, then interrupt")
    parser.add_argument("--max-children", type=int, default=2, help="mutants run in parallel")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies")
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="run only each module's previous survivors and unchecked mutants (after adding tests)",
    )
    parser.add_argument(
        "--survivors-only",
        action="store_true",
        help="with --rerun: only the survivors (and timeouts), not the mutants never checked",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    unknown = sorted(set(args.only or ()) - set(MODULES))
    if unknown:
        parser.error(f"unknown modules {unknown}; choose from {sorted(MODULES)}")
    previous = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {}
    modules = dict(previous.get("modules", {}))
    for module in args.only or list(MODULES):
        print(f"mutating src/openrecipe/{module} ...", flush=True)
        before = modules.get(module, {})
        if args.rerun and "mutants" in before:
            names = sorted(
                {s["name"] for s in before.get("survivors", [])}
                | {e["name"] for e in before.get("equivalent", [])}
                | set(() if args.survivors_only else before.get("not_checked_names", []))
                | set(before.get("timeout_names", []))
                | set(before.get("no_tests_names", []))
            )
            if not names:
                continue
            row = _measure(module, args.timeout, args.max_children, args.keep, names)
            modules[module] = _merge(before, row, names) if "mutants" in row else row
        else:
            modules[module] = _measure(module, args.timeout, args.max_children, args.keep)
        modules[module].pop("_status_of", None)
        row = modules[module]
        print(
            f"  {row.get('mutants')} mutants: {row.get('killed')} killed, "
            f"{row.get('survived')} survived, {row.get('timeouts')} timeouts, "
            f"{row.get('not_checked')} not checked, {row.get('wall_s')} s",
            flush=True,
        )
    rows = [modules[m] for m in MODULES if m in modules and "mutants" in modules[m]]
    killed = sum(r["killed"] + r["timeouts"] for r in rows)
    checked = sum(r["killed"] + r["timeouts"] + r["survived"] for r in rows)
    result = {
        "tool": "mutmut " + _version(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": "bench/mutation.py " + " ".join(sys.argv[1:]),
        "modules_planned": list(MODULES),
        "modules_covered": [m for m in MODULES if m in modules],
        "partial": any(m not in modules or not modules[m].get("finished") for m in MODULES),
        "score": round(killed / checked, 4) if checked else None,
        "score_counts": {"killed_or_timeout": killed, "checked": checked},
        "modules": {m: modules[m] for m in MODULES if m in modules},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, args.out)
    print(f"score {result['score']} over {len(rows)} modules -> {args.out}")
    return 0


def _version() -> str:
    from importlib.metadata import version

    return version("mutmut")


if __name__ == "__main__":
    sys.exit(main())
