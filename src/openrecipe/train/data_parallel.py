"""Data parallelism for the training stages: ``torchrun`` processes, FSDP2 sharding.

Why FSDP2 (``torch.distributed.fsdp.fully_shard``) and not DDP or an all-reduce of our own: it is
what torchtitan and Megatron-Bridge's PyTorch path use, the same call shards parameters, gradients
and optimizer state over NCCL on a GPU cluster and over gloo on CPU (where CI exercises it), and
one process stays the plain single-process loop (every function here is a no-op at world size 1).

The contract a training loop follows:
- every rank builds the same global batch (a pure function of the step and the seed) and trains
  on its contiguous slice of it (``local_rows``);
- the loss is the token-weighted mean over the *global* batch (``global_token_mean``), so the
  gradient FSDP averages over ranks equals the single-process gradient of the same batch;
- only rank 0 writes (``World.is_writer``): metrics, checkpoints and the stage manifest; the
  model it saves is the gathered full state (``full_state_dict``).

What stays deterministic across world sizes: the samples, their order, the step schedule and the
loss definition. What does not, bit for bit: the gradient sums (a reduce-scatter adds the ranks'
partial sums in a different order from one process's backward), so losses and weights of a
2-process run match a 1-process run within float rounding, not byte for byte. For a fixed world
size, reruns are byte-identical (gloo's reductions are deterministic; tested).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from openrecipe.errors import RecipeError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (``torchrun``'s RANK / WORLD_SIZE)."""

    rank: int = 0
    size: int = 1

    @property
    def is_writer(self) -> bool:
        """Rank 0 alone writes outputs, so a stage's files are written once."""
        return self.rank == 0


def world_from_env(environ: dict[str, str] | None = None) -> World:
    """The world ``torchrun`` describes in the environment; one process when it is absent."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return World()
    try:
        rank, size = int(env["RANK"]), int(env["WORLD_SIZE"])
    except (KeyError, ValueError) as exc:
        raise RecipeError(
            f"RANK/WORLD_SIZE: torchrun's environment is not two integers ({exc})"
        ) from None
    if size < 1 or not 0 <= rank < size:
        raise RecipeError(f"RANK={rank}, WORLD_SIZE={size}: rank outside the world")
    return World(rank, size)


@contextlib.contextmanager
def process_group(world: World) -> Iterator[None]:
    """The collective backend for ``world`` (NCCL with CUDA, gloo on CPU), torn down on exit."""
    if world.size == 1 or dist.is_initialized():
        yield
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, rank=world.rank, world_size=world.size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def shard(model: nn.Module, world: World) -> nn.Module:
    """FSDP2 over ``model``: one unit per decoder block (as torchtitan shards a transformer),
    then the root for the embeddings and head; unchanged at world size 1."""
    if world.size == 1:
        return model
    from torch.distributed.fsdp import fully_shard

    for block in _blocks(model):
        fully_shard(block)
    fully_shard(model)
    return model


def _blocks(model: nn.Module) -> Sequence[nn.Module]:
    """The repeated layers of a Hugging Face causal LM (``model.model.layers`` or
    ``backbone.layers``); none for another module (then the root is the only unit)."""
    for owner in ("model", "backbone"):
        inner = getattr(model, owner, None)
        layers = getattr(inner, "layers", None)
        if isinstance(layers, nn.ModuleList):
            return list(layers)
    return []


def local_rows(rows: Sequence[T], world: World, *, field: str = "batch_size") -> list[T]:
    """This rank's contiguous slice of the global batch ``rows``.

    The global batch must divide evenly, so every rank runs the same number of rows and a
    1-process run sees the same samples in the same order; ``field`` names the recipe field
    that sets the batch, for the refusal."""
    if len(rows) % world.size:
        raise RecipeError(
            f"{field}: {len(rows)} rows do not divide over {world.size} training processes"
        )
    per_rank = len(rows) // world.size
    return list(rows[world.rank * per_rank : (world.rank + 1) * per_rank])


def all_sum(value: torch.Tensor, world: World) -> torch.Tensor:
    """``value`` summed over the ranks (a copy; the input is left as it was)."""
    total = value.detach().clone()
    if world.size > 1:
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def global_token_mean(
    local_sum: torch.Tensor, local_tokens: torch.Tensor | int, world: World
) -> torch.Tensor:
    """The loss to backpropagate on this rank: its summed token losses over the global token
    count, times the world size (FSDP averages gradients over ranks, so the mean of these
    gradients is the gradient of total loss / total tokens). Its value summed over ranks and
    divided by the world size is the global batch's token mean (``logged_mean``)."""
    tokens = torch.as_tensor(local_tokens, dtype=torch.float64)
    total_tokens = all_sum(tokens, world)
    if total_tokens.item() == 0:
        raise RecipeError("the global batch has no loss token (every label is masked)")
    return local_sum * (world.size / total_tokens.item())


def logged_mean(loss: torch.Tensor, world: World) -> float:
    """The global batch's loss for the metrics, from each rank's ``global_token_mean`` value."""
    return all_sum(loss.float(), world).item() / world.size


def full_state_dict(model: nn.Module, world: World) -> dict[str, torch.Tensor]:
    """The whole model's weights on CPU (gathered from the shards on every rank; the writer
    saves them). At world size 1 this is the plain ``state_dict``."""
    if world.size == 1:
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def save_pretrained(model: Any, target: os.PathLike[str] | str, world: World) -> None:
    """``save_pretrained`` of the whole model by the writer, in the same files a single process
    writes; every rank takes part in the gather, and all wait until the files exist.

    The gathered weights go into an unsharded copy of the model built on the meta device
    (``assign=True``: no second allocation) rather than through ``save_pretrained(state_dict=)``,
    which would skip transformers' own key renaming and tied-weight handling."""
    if world.size == 1:
        model.save_pretrained(target, safe_serialization=True)
        return
    from transformers import AutoModelForCausalLM

    state = full_state_dict(model, world)
    if world.is_writer:
        with torch.device("meta"):
            plain = AutoModelForCausalLM.from_config(model.config)
        plain.load_state_dict(state, assign=True)
        plain.tie_weights()
        plain.save_pretrained(target, safe_serialization=True)
    dist.barrier()
