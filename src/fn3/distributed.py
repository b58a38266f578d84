"""Distributed training on PyTorch's own engine: ``torch.distributed`` launched by ``torchrun``.

``fn3 train`` needs no code change to run on several processes or machines::

    torchrun --nproc_per_node=2 -m fn3 train --model resnet20 --data cifar10 ... --out runs/r20

:func:`setup` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...)
and initialises the default process group with gloo on CPU or NCCL when CUDA is available. Without
those variables everything runs in one process and nothing here does anything.

How the pieces stay identical to a single process with the same global batch:

* **Same sub-model on every rank.** Ordered dropout's draw for step ``t`` is a pure function of
  ``(seed, t)`` (:class:`fn3.OrderedDropout`), so every rank computes the same spec locally, without
  communicating; :func:`check_same` verifies it (a cheap all-gather of a hash) in tests and every
  ``check_every`` steps. If ranks trained different slices, the gradient all-reduce would average
  gradients of different sub-models.
* **Data.** Each rank builds the step's global batch (the order is a function of ``(seed, epoch)``) and
  keeps its contiguous shard of ``batch_size / world`` samples (:func:`shard`); after the step's
  backward passes :func:`average_gradients` averages the per-rank gradients (one all-reduce), so the
  update equals the single-process update on the whole batch; nested BatchNorm synchronises its
  statistics over the ranks.
* **Unused parameters.** Ordered dropout drops residual blocks and channels, so some parameters get no
  gradient in a step; they have none on any rank (same specs), and keep ``grad=None`` as in one
  process. (Not ``DistributedDataParallel``: see :func:`average_gradients`.)
* **Checkpoints** are written by rank 0 only; every rank loads the same file, so a run can resume on
  any number of ranks.

Example (single process: a no-op):
    >>> from fn3.distributed import setup, world_size, rank
    >>> setup()
    False
    >>> world_size(), rank()
    (1, 0)
"""

from __future__ import annotations

import datetime
import hashlib
import os
from typing import Any

import torch
import torch.distributed as dist

from fn3.errors import ConfigError

__all__ = ["barrier", "check_same", "cleanup", "is_main", "rank", "setup", "shard", "world_size"]

#: Seconds a collective waits for a peer before failing (a dead rank must not hang the job);
#: ``$FN3_DIST_TIMEOUT`` overrides it when :func:`setup` runs.
TIMEOUT_S = 120


def launched() -> bool:
    """True when started by torchrun (or another launcher that sets ``WORLD_SIZE``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup() -> bool:
    """Initialise the default process group from torchrun's environment; False if not distributed."""
    if dist.is_available() and dist.is_initialized():
        return True
    if not launched():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    timeout = int(os.environ.get("FN3_DIST_TIMEOUT", TIMEOUT_S))
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout))
    return True


#: Seconds :func:`cleanup` waits for the other ranks before it destroys the group anyway.
CLEANUP_WAIT_S = 60


def cleanup() -> None:
    """Destroy the process group once every rank has got here. A rank that destroyed its group (and
    exited) while another still talked to it made that one abort at exit ("terminate called without
    an active exception", SIGABRT; seen once in CI after ``--max-steps``). A rank that never arrives
    (it failed) is waited for :data:`CLEANUP_WAIT_S` seconds, not forever."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=CLEANUP_WAIT_S))
        else:
            dist.barrier()
    except Exception:  # noqa: BLE001  (another rank failed: its own error is the one to report)
        pass
    dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shard(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's contiguous share of a global batch ``x`` (B, ...) and ``y`` (B,)."""
    w = world_size()
    if w == 1:
        return x, y
    if len(y) % w:
        raise ConfigError(
            f"batch of {len(y)} does not split evenly over {w} processes; use a --batch-size divisible by {w}"
        )
    n = len(y) // w
    r = rank()
    return x[r * n : (r + 1) * n], y[r * n : (r + 1) * n]


def broadcast_state(model: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (all ranks then start from the same model)."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src=0)


def average_gradients(model: torch.nn.Module) -> None:
    """Average every existing gradient over the ranks, in place (one all-reduce of one flat buffer).

    Every rank trains the same specs (:func:`check_same`), so the same parameters have a gradient
    on every rank and the flat buffers line up; a parameter no spec of the step used keeps
    ``grad=None`` everywhere, as in one process. This replaces ``DistributedDataParallel``, whose
    unused-parameter search looks at the last backward only: with several specs a step (the default
    rule trains two) a parameter used by an earlier spec but not by the last one depended on DDP's
    bookkeeping across ``no_sync``; one explicit average after all the specs needs none.
    """
    average_tensors_([p.grad for p in model.parameters() if p.grad is not None])


def average_tensors_(tensors: list[torch.Tensor]) -> None:
    """Average ``tensors`` over the ranks, in place (one all-reduce of one flat buffer; a no-op in one
    process). ``spec_loss="norm"`` averages each spec's own gradient this way before taking its
    norm, so that the norm is that of the whole batch's gradient, as one process computes it."""
    if world_size() > 1:
        _all_reduce_flat_(tensors, divisor=world_size())


def _all_reduce_flat_(tensors: list[torch.Tensor], op: Any = None, divisor: int = 1) -> None:
    """All-reduce ``tensors`` in place as one flat buffer (one collective, however many tensors),
    divided by ``divisor`` when it is not 1; ``op`` defaults to the sum."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])  # (total,)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM if op is None else op)
    if divisor != 1:
        flat /= divisor
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def all_reduce_max_(tensors: list[torch.Tensor]) -> None:
    """The element-wise maximum of each tensor over the ranks, in place (one all-reduce of one flat
    buffer; every rank passes tensors of the same shapes and dtype, in the same order).

    ``spec_loss="shared"`` counts, per weight, the specs whose pass gave it a nonzero gradient; a spec
    that used a weight on any rank's share of the batch used it on the whole batch, so the maximum
    over the ranks is the count one process would have found.
    """
    if world_size() > 1:
        _all_reduce_flat_(tensors, op=dist.ReduceOp.MAX)


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum ``values`` over ranks (float64)."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def check_same(text: str, stop: bool = False) -> bool:
    """Raise if ``text`` (the step's specs as JSON) differs between ranks; return whether any rank stops.

    One all-gather of a 56-bit hash and a stop flag per step: cheap next to a training step, and it
    turns a silent divergence (ranks training different slices) into an error.
    """
    if world_size() == 1:
        return stop
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")
    mine = torch.tensor([digest, int(stop)], dtype=torch.int64)
    everyone = [torch.zeros_like(mine) for _ in range(world_size())]
    dist.all_gather(everyone, mine)
    if any(int(e[0]) != digest for e in everyone):
        raise RuntimeError(f"ranks disagree on the trained sub-model at this step ({text[:80]}...)")
    return any(bool(e[1]) for e in everyone)
