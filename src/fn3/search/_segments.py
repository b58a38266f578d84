"""Score many sub-models at once, sharing the layers they have in common (a prefix tree of specs).

A registered model's forward pass is cut into *segments* run in order: the MLP's layers; a ResNet's
stem, each residual block, and the pooled classifier. A segment reads a few axes (its layers' slots),
so its output depends only on the kept blocks of the axes read by it *and by every segment before
it*. Specs that agree on those share that output. :func:`score_tree` groups the specs level by level
(a trie keyed by each segment's axes) and runs every distinct prefix once: the heuristic's
candidates, which differ from their parent in one block, recompute only the layers from the first
segment reading that block's axis onwards.

BatchNorm re-estimation fits the same scheme: a segment's recalibrated statistics depend only on its
train-mode inputs, which the trie shares too. The statistics are computed exactly as
:func:`fn3.evaluate.recalibrate_bn` computes them (reset, cumulative average over the calibration
batches, train mode), so the scores are bit-identical to the plain per-spec evaluation.

Memory: the trie is walked depth-first with all validation batches at once, so it holds one output
of the validation set per segment on the current path (at most one per segment), never one per spec.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fn3.nn.base import NestedModule
from fn3.nn.slot import AxisSlot
from fn3.spec import Spec

__all__ = ["Segment", "score_tree", "segments_of"]


@dataclass(frozen=True)
class Segment:
    """One piece of the forward pass: ``run(x)``, the axes it reads, the modules it runs."""

    run: Callable[[torch.Tensor], torch.Tensor]
    axes: tuple[str, ...]  # axes whose kept blocks change this segment's output
    modules: tuple[nn.Module, ...]  # for train/eval switching and BatchNorm statistics
    gate: tuple[str, int] | None = None  # (depth axis, block): the segment runs iff block is kept

    def key(self, keep: dict[str, tuple[int, ...]]) -> tuple:
        if self.gate is not None and self.gate[1] not in keep[self.gate[0]]:
            return ("skip",)  # a dropped residual block is the identity: its own axes do not matter
        return tuple(keep[a] for a in self.axes)

    def set_axes(self) -> tuple[str, ...]:
        return self.axes if self.gate is None else (*self.axes, self.gate[0])

    def bns(self) -> list[nn.modules.batchnorm._BatchNorm]:
        return [m for mod in self.modules for m in mod.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _axes(*modules: nn.Module) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for mod in modules:
        for m in mod.modules():
            if isinstance(m, NestedModule):
                for s in m.fn3_slots():
                    names.setdefault(s.axis.name, None)
    return tuple(names)


def segments_of(model: nn.Module) -> list[Segment] | None:
    """The segments of a registered MLP or ResNet, or ``None`` (then specs are scored one by one).

    Only the exact classes are cut: a subclass may override ``forward``.
    """
    from fn3.models.mlp import NestedMLP
    from fn3.models.resnet import NestedResNet

    if type(model) is NestedMLP:
        return _mlp_segments(model)
    if type(model) is NestedResNet:
        return _resnet_segments(model)
    return None


def _mlp_segments(model: nn.Module) -> list[Segment]:
    layers = list(model.layers)
    segs = []
    for i, layer in enumerate(layers):
        def run(x, layer=layer, first=i == 0, last=i == len(layers) - 1):
            # (B, C, H, W) -> (B, C*H*W) for the first layer; (B, in_active) -> (B, out_active)
            y = layer(x.flatten(1) if first else x)
            return y if last else F.relu(y)

        segs.append(Segment(run, _axes(layer), (layer,)))
    return segs


def _resnet_segments(model: nn.Module) -> list[Segment]:
    segs = [Segment(lambda x: F.relu(model.stem_bn(model.stem(x))), _axes(model.stem, model.stem_bn),
                    (model.stem, model.stem_bn))]
    for stage in model.stages:
        depth = stage.depth
        for b, block in enumerate(stage.blocks):
            gate = (depth.axis.name, b) if depth is not None else None

            def run(x, block=block, b=b, stage=stage):
                # (B, C_in, H, W) -> (B, C_out, H', W'); a dropped block passes x through
                return block(x) if b in stage.active_blocks() else x

            segs.append(Segment(run, _axes(block), (block,), gate))
    segs.append(Segment(lambda x: model.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)),
                        _axes(model.fc), (model.fc,)))
    return segs


@torch.no_grad()
def score_tree(segments: Sequence[Segment], slots: dict[str, AxisSlot], specs: Sequence[Spec],
               val: Sequence[tuple[torch.Tensor, torch.Tensor]],
               calib: Sequence[torch.Tensor] | None) -> list[float]:
    """Top-1 accuracy of every spec over ``val`` (batches), sharing common prefixes.

    With ``calib`` (input batches), each segment's BatchNorm statistics are re-estimated for the
    spec's prefix before the validation pass, as :func:`fn3.evaluate.recalibrate_bn` does. The
    caller puts the model in eval mode, restores slots and BatchNorm statistics afterwards, and sets
    every BatchNorm's momentum to ``None`` (cumulative average) when ``calib`` is given.
    """
    keeps = [s.as_dict() for s in specs]
    keys = [[seg.key(k) for seg in segments] for k in keeps]
    labels = torch.cat([y for _, y in val])  # (N,)
    scores: list[float] = [0.0] * len(specs)
    bns = [seg.bns() for seg in segments]
    # Calibration activations are needed only while some later segment still has a BatchNorm.
    need_calib = [any(bns[j] for j in range(i, len(segments))) for i in range(len(segments))]

    def visit(level: int, members: list[int], xs: list[torch.Tensor],
              cs: list[torch.Tensor] | None) -> None:
        if level == len(segments):
            pred = torch.cat([x.argmax(dim=1) for x in xs])  # (N,) predicted classes
            acc = float((pred == labels).float().mean()) if len(labels) else 0.0
            for i in members:
                scores[i] = acc
            return
        groups: dict[tuple, list[int]] = {}
        for i in members:
            groups.setdefault(keys[i][level], []).append(i)
        seg = segments[level]
        for group in groups.values():
            keep = keeps[group[0]]
            for name in seg.set_axes():
                slots[name].set(keep[name])
            out_c = None
            if cs is not None and need_calib[level]:
                for bn in bns[level]:
                    bn.reset_running_stats()
                for m in seg.modules:
                    m.train()
                out_c = [seg.run(x) for x in cs]  # train mode: batch statistics, running ones updated
                for m in seg.modules:
                    m.eval()
            out = [seg.run(x) for x in xs]
            visit(level + 1, group, out, out_c)

    visit(0, list(range(len(specs))), [x for x, _ in val], None if calib is None else list(calib))
    return scores
