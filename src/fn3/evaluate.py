"""Evaluate sub-models: accuracy under a spec, and BatchNorm re-estimation for that spec.

A nested model shares one BatchNorm across all its sub-models, so the running statistics describe
the mixture ordered dropout trained on. :func:`recalibrate_bn` re-estimates them for one spec from a
few training batches (US-Nets' post-training BN calibration); :func:`bn_recalibrated` does the same
inside a ``with`` block and puts the shared statistics back afterwards, so evaluating many specs in a
row never lets one spec's statistics leak into the next.

Example:
    >>> import torch, fn3
    >>> from fn3.evaluate import accuracy, bn_recalibrated
    >>> model = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8)
    >>> data = [(torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)))]
    >>> spec = fn3.space(model).uniform({"channels": 0.5})
    >>> with bn_recalibrated(model, spec, data):
    ...     acc = accuracy(model, data, spec)
    >>> 0.0 <= acc <= 1.0
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice

import torch
from torch import nn

from fn3.nest import active
from fn3.spec import Spec

__all__ = ["accuracy", "bn_recalibrated", "recalibrate_bn", "predict"]

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def predict(
    model: nn.Module, batches: Batches, spec: Spec | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes (N,) and labels (N,) of ``model`` (as ``spec``) over ``batches``, in eval mode."""
    was_training = model.training
    model.eval()
    preds, labels = [], []
    try:
        with active(model, spec):
            for x, y in batches:
                preds.append(model(x).argmax(dim=1))
                labels.append(y)
    finally:
        model.train(was_training)
    return torch.cat(preds), torch.cat(labels)


def accuracy(model: nn.Module, batches: Batches, spec: Spec | None = None) -> float:
    """Top-1 accuracy in [0, 1] of the sub-model ``spec`` (``None``: as currently active)."""
    if spec is None:
        pred, y = predict(model, batches)
    else:
        pred, y = predict(model, batches, spec)
    return float((pred == y).float().mean()) if len(y) else 0.0


def _bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, spec: Spec | None, batches: Batches, num_batches: int = 20
) -> None:
    """Re-estimate every BatchNorm's running statistics for ``spec`` in place (cumulative average).

    Uses at most ``num_batches`` batches, in train mode, without gradients; the parameters are not
    changed. Statistics of channels the spec does not keep are left as they were.
    """
    bns = _bn_layers(model)
    if not bns:
        return
    was_training = model.training
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average over the calibration batches
    model.train()
    try:
        with active(model, spec):
            for x, _ in islice(batches, num_batches):
                model(x)
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
        model.train(was_training)


@contextmanager
def bn_recalibrated(
    model: nn.Module, spec: Spec | None, batches: Batches, num_batches: int = 20
) -> Iterator[nn.Module]:
    """Inside the block, BatchNorm statistics are re-estimated for ``spec``; restored on exit."""
    saved = [
        (bn, bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
        for bn in _bn_layers(model)
        if bn.running_mean is not None
    ]
    try:
        recalibrate_bn(model, spec, batches, num_batches)
        yield model
    finally:
        for bn, mean, var, count in saved:
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.num_batches_tracked.copy_(count)
