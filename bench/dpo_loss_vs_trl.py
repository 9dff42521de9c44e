"""openrecipe's DPO loss against TRL's on the same sequence log-probs (a one-off check).

TRL is not a dependency of openrecipe; run this in a side environment that has it:

    python -m venv --system-site-packages /tmp/trl && \
      echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/trl/lib/python3.11/site-packages/main.pth && \
      /tmp/trl/bin/pip install --no-deps trl==1.16.0
    PYTHONPATH=src /tmp/trl/bin/python bench/dpo_loss_vs_trl.py

It prints, per case, TRL's and our per-pair losses and the largest difference of losses and
implicit rewards; ``tests/unit/test_dpo.py`` pins the TRL numbers it printed (``TRL_LOSSES``).
TRL 1.16 computes the loss inside ``DPOTrainer._compute_loss`` (no standalone loss function),
so that method is called unbound, one pair at a time, on a stand-in ``self`` with the
attributes it reads and a stand-in model whose per-token log-probs sum to the pair's
(reference log-probs precomputed, as ``precompute_ref_logps`` does).
"""

from __future__ import annotations

import json
import types
from collections import defaultdict
from pathlib import Path

import torch
import trl
from trl import DPOTrainer

from openrecipe.train.dpo_loss import dpo_loss, sequence_logprobs

# Four pairs: sequence log-probs of the policy and the reference, and completion lengths.
PAIRS = {
    "policy_chosen": [-12.5, -30.25, -7.0, -50.0],
    "policy_rejected": [-14.0, -29.0, -9.5, -48.75],
    "ref_chosen": [-13.0, -30.0, -7.25, -49.5],
    "ref_rejected": [-13.5, -29.5, -9.0, -49.0],
    "n_chosen": [3, 5, 2, 4],
    "n_rejected": [4, 2, 6, 3],
}
CASES = [("sigmoid", 0.1), ("sigmoid", 0.5), ("ipo", 0.1), ("ipo", 0.5)]


def _tokens(
    total: list[float], lengths: list[int], width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs [B, width] summing to ``total`` over ``lengths`` tokens, and the mask."""
    logp = torch.zeros(len(total), width, dtype=torch.float64)
    mask = torch.zeros(len(total), width, dtype=torch.float64)
    for row, (value, n) in enumerate(zip(total, lengths, strict=True)):
        logp[row, :n] = value / n
        mask[row, :n] = 1
    return logp, mask


def trl_loss(loss_type: str, beta: float, index: int) -> dict[str, float]:
    """TRL 1.16's ``DPOTrainer._compute_loss`` on pair ``index``: a stand-in ``self`` and a
    model that returns the pair's per-token log-probs (reference log-probs precomputed)."""
    n_c, n_r = PAIRS["n_chosen"][index], PAIRS["n_rejected"][index]
    width = max(n_c, n_r)
    logp, mask = _tokens(
        [PAIRS["policy_chosen"][index], PAIRS["policy_rejected"][index]], [n_c, n_r], width
    )
    completion_mask = torch.cat([torch.zeros(2, 1, dtype=torch.long), mask.long()], dim=1)
    zeros = torch.zeros_like(logp)
    outputs = types.SimpleNamespace(
        log_probs=logp, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool(), aux_loss=None
    )
    model = types.SimpleNamespace(training=True)
    same = lambda x: x  # noqa: E731  (one process: gathers are the identity)
    fake = types.SimpleNamespace(
        model=model,
        accelerator=types.SimpleNamespace(
            device=torch.device("cpu"), gather_for_metrics=same, gather=same
        ),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=0.0,
        use_weighting=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
        _total_train_tokens=0,
        _tp_size=1,
    )
    inputs = {
        "input_ids": torch.zeros_like(completion_mask),
        "attention_mask": torch.ones_like(completion_mask),
        "completion_mask": completion_mask,
        "ref_chosen_logps": torch.tensor([PAIRS["ref_chosen"][index]], dtype=torch.float64),
        "ref_rejected_logps": torch.tensor([PAIRS["ref_rejected"][index]], dtype=torch.float64),
    }
    loss = DPOTrainer._compute_loss(fake, lambda **_: outputs, inputs, return_outputs=False)
    metrics = fake._metrics["train"]
    return {
        "loss": float(loss),
        "chosen_reward": metrics["rewards/chosen"][-1],
        "rejected_reward": metrics["rewards/rejected"][-1],
    }


def ours(loss_type: str, beta: float) -> dict[str, list[float]]:
    width = max(PAIRS["n_chosen"] + PAIRS["n_rejected"])
    logps, counts = {}, {}
    for side in ("chosen", "rejected"):
        n = PAIRS[f"n_{side}"]
        for who in ("policy", "ref"):
            tokens, mask = _tokens(PAIRS[f"{who}_{side}"], n, width)
            logps[f"{who}_{side}"], counts[side] = sequence_logprobs(tokens, mask)
    out = dpo_loss(
        logps["policy_chosen"],
        logps["policy_rejected"],
        logps["ref_chosen"],
        logps["ref_rejected"],
        beta=beta,
        loss_type=loss_type,
        chosen_tokens=counts["chosen"],
        rejected_tokens=counts["rejected"],
    )
    return {
        "loss": out.losses.tolist(),
        "chosen_reward": out.chosen_rewards.tolist(),
        "rejected_reward": out.rejected_rewards.tolist(),
    }


def main() -> None:
    report = {"trl": trl.__version__, "cases": []}
    for loss_type, beta in CASES:
        theirs = [trl_loss(loss_type, beta, i) for i in range(len(PAIRS["n_chosen"]))]
        mine = ours(loss_type, beta)
        diff = max(abs(t[key] - mine[key][i]) for i, t in enumerate(theirs) for key in mine)
        report["cases"].append(
            {
                "loss_type": loss_type,
                "beta": beta,
                "trl_losses": [t["loss"] for t in theirs],
                "ours_losses": mine["loss"],
                "max_abs_diff_loss_and_rewards": diff,
            }
        )
    text = json.dumps(report, indent=1)
    print(text)
    out = Path(__file__).resolve().parents[1] / "results" / "bench" / "dpo_loss_vs_trl.json"
    out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
