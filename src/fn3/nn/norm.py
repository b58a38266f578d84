"""`NestedBatchNorm2d` and `NestedLayerNorm`: one shared norm whose parameters (and statistics) are sliced.

The paper uses one BatchNorm shared by every sub-model; its running statistics then describe a mixture
of sub-models, which is why :func:`fn3.recalibrate_bn` re-estimates them for a given spec before it is
evaluated. In training mode only the active slice of the running statistics is updated.

Under ``torchrun`` (an initialised process group with more than one rank) the batch statistics are
synchronised across ranks (one autograd-aware all-reduce of the per-channel sums per layer), so a
distributed step normalises with the statistics of the whole global batch and equals the
single-process step; ``sync=False`` keeps per-rank statistics, as plain DDP does.

Example:
    >>> import torch
    >>> from fn3.spec import Axis
    >>> from fn3.nn.slot import AxisSlot
    >>> width = AxisSlot(Axis("w", "channels", 8, step=4))
    >>> bn = NestedBatchNorm2d(8, axis=width)
    >>> width.set((0,))
    >>> bn(torch.randn(2, 4, 3, 3)).shape
    torch.Size([2, 4, 3, 3])
    >>> ln = NestedLayerNorm(8, axis=width)     # a layer norm over the kept features only
    >>> ln(torch.randn(2, 5, 4)).shape
    torch.Size([2, 5, 4])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fn3.nn.base import NestedModule, select
from fn3.nn.protocol import FLOAT_BITS, AxisUse, LeafCost, uses
from fn3.nn.slot import AxisSlot

__all__ = ["NestedBatchNorm2d", "NestedLayerNorm"]


class NestedBatchNorm2d(nn.BatchNorm2d, NestedModule):
    """``nn.BatchNorm2d`` over the active channels of ``axis`` (``per_unit`` channels per unit)."""

    def __init__(
        self,
        num_features: int,
        *,
        axis: AxisSlot | None = None,
        per_unit: int = 1,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        sync: bool = True,
    ):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.axis, self.per_unit, self.sync = axis, per_unit, sync

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C_active, H, W)
        sel = select(self.axis, self.num_features, self.per_unit)
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        else:
            factor = 0.0
        use_batch = self.training or self.running_mean is None
        w, b = sel.take(self.weight, 0), sel.take(self.bias, 0)
        if self.running_mean is None:
            return F.batch_norm(x, None, None, w, b, True, factor, self.eps)
        rm, rv = sel.take(self.running_mean, 0), sel.take(self.running_var, 0)
        if use_batch and self.sync and _distributed():
            y = sync_batch_norm(x, rm, rv, w, b, factor, self.eps)
        else:
            y = F.batch_norm(x, rm, rv, w, b, use_batch, factor, self.eps)
        if use_batch and sel.index is not None:
            # A gathered slice is a copy: write the updated statistics back to their channels.
            self.running_mean.index_copy_(0, sel.index, rm)
            self.running_var.index_copy_(0, sel.index, rv)
        return y

    # -- the nested-leaf protocol (fn3.nn.protocol) ----------------------------------------------
    def fn3_axes(self) -> tuple[AxisUse, ...]:
        return uses((self.axis, "out", self.per_unit))

    def fn3_cost(self, in_shape: tuple[int, ...]) -> LeafCost:
        # The affine pair of each kept channel; the running statistics fold into it at deployment.
        n = select(self.axis, self.num_features, self.per_unit).n if self.affine else 0
        return LeafCost(params=2 * n, bits=2 * n * FLOAT_BITS)

    @torch.no_grad()
    def extract(self) -> nn.Module:
        """A plain ``nn.BatchNorm2d`` over the kept channels (statistics and affine pair sliced)."""
        sel = select(self.axis, self.num_features, self.per_unit)
        bn = nn.BatchNorm2d(sel.n, self.eps, self.momentum, self.affine, self.track_running_stats)
        for name in ("weight", "bias", "running_mean", "running_var"):
            src = getattr(self, name)
            if src is not None:
                getattr(bn, name).copy_(sel.take(src, 0))
        if self.num_batches_tracked is not None:
            bn.num_batches_tracked.copy_(self.num_batches_tracked)
        return bn.eval()


class NestedLayerNorm(NestedModule):
    """``nn.LayerNorm`` over the last dimension, normalising the kept features of ``axis`` only.

    A sub-model that keeps ``n`` features normalises over those ``n`` (its own mean and variance),
    as a layer norm of width ``n`` would. Arguments as ``nn.LayerNorm`` (one normalised dimension).
    """

    def __init__(
        self,
        normalized_shape: int | tuple[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        *,
        axis: AxisSlot | None = None,
        per_unit: int = 1,
    ):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if len(shape) != 1:
            raise ValueError("NestedLayerNorm normalises one (the last) dimension")
        self.normalized_shape, self.eps = shape, eps
        self.elementwise_affine = elementwise_affine
        self.axis, self.per_unit = axis, per_unit
        self.weight = nn.Parameter(torch.ones(shape)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(shape)) if elementwise_affine and bias else None

    def _sel(self):
        return select(self.axis, self.normalized_shape[0], self.per_unit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (..., D_active)
        sel = self._sel()
        w = sel.take(self.weight, 0) if self.weight is not None else None
        b = sel.take(self.bias, 0) if self.bias is not None else None
        return F.layer_norm(x, (sel.n,), w, b, self.eps)

    def fn3_axes(self) -> tuple[AxisUse, ...]:
        return uses((self.axis, "out", self.per_unit))

    def fn3_cost(self, in_shape: tuple[int, ...]) -> LeafCost:
        n = self._sel().n
        p = n * ((self.weight is not None) + (self.bias is not None))
        return LeafCost(params=p, bits=p * FLOAT_BITS)

    @torch.no_grad()
    def extract(self) -> nn.Module:
        """A plain ``nn.LayerNorm`` over the kept features."""
        sel = self._sel()
        ln = nn.LayerNorm(sel.n, self.eps, self.elementwise_affine, bias=self.bias is not None)
        if self.weight is not None:
            ln.weight.copy_(sel.take(self.weight, 0))
        if self.bias is not None:
            ln.bias.copy_(sel.take(self.bias, 0))
        return ln.eval()

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sync_batch_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    momentum: float,
    eps: float,
) -> torch.Tensor:
    """Batch norm over the global batch of all ranks; updates the running statistics in place.

    The per-channel sums are accumulated in float64 so that ``E[x^2] - E[x]^2`` does not cancel.
    """
    from torch.distributed.nn.functional import all_reduce

    c = x.shape[1]
    xd = x.double()  # (B, C, H, W)
    count = x.new_full((1,), x.numel() // c, dtype=torch.float64)
    stats = all_reduce(torch.cat([xd.sum((0, 2, 3)), (xd * xd).sum((0, 2, 3)), count]))  # (2C + 1,)
    n = stats[-1]
    mean = stats[:c] / n
    var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0.0)  # biased, as batch norm normalises
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(mean.float(), alpha=momentum)
        running_var.mul_(1 - momentum).add_((var * n / (n - 1).clamp_min(1)).float(), alpha=momentum)
    scale = (torch.rsqrt(var + eps).float() * weight)[None, :, None, None]
    return (x - mean.float()[None, :, None, None]) * scale + bias[None, :, None, None]
