"""Ordered dropout: which sub-model each training step trains.

:class:`OrderedDropout` draws, for every axis, one number of kept blocks ``k`` per step (shared by the
whole mini-batch) and keeps the prefix ``0..k-1``: block 0 is always trained, the last block rarely.

* ``dist="geometric"`` (default): truncated geometric, ``P(block m kept) = rho ** (m - m0)`` for blocks
  past the ``m0`` mandatory ones; the tail's mass lands on the full axis.
* ``dist="uniform"``: ``k`` uniform over ``m0..M``.

``tie`` says which axes share one draw. ``"none"`` (default, the paper's rule: one index per group)
draws every axis independently, so a sub-model that keeps 25% of *every* layer is rarely trained as
such when there are many axes. ``"kind"`` draws one number per kind (channels, bits, ...) and maps it
through each axis's own distribution, so all axes of a kind keep the same fraction that step, as
US-Nets' single width multiplier does; an fn3 option, measured against the paper's rule in
``docs/reproduction.md`` (experiment 2).

The draw for step ``t`` is a pure function of ``(seed, t)`` (a fresh ``torch.Generator`` seeded from
both), not of a generator advanced step by step. That choice makes three things free: a resumed run
draws exactly the specs it would have drawn, every distributed rank draws the same spec at the same
step without communicating, and the sampler's whole state is the step counter.

:class:`FullPlusODO` (``rule="full+odo"``, ``fn3 train``'s default on several levels) trains the
largest sub-model at every step beside ``draws`` ordered-dropout draws. With one draw per axis the
chance that a step trains the whole largest model is about the product of ``rho^(K-1)`` over the
axes: almost never in a ResNet with a dozen axes, so the full model and the BatchNorm statistics
every member shares lag behind. Every method that reaches parity with separately trained models
trains the largest member at every step (US-Nets, Any-Precision DNN, AdaBits); this is that, with
the paper's ordered dropout for the rest. :class:`Sandwich` is the US-Nets rule (largest + smallest
+ ``n`` random specs per step). :class:`ListedSpecs` (``rule="specs"``) draws nothing: it trains the
largest and every sub-model the user lists (the deployment budgets) at every step, as Slimmable
Networks and Any-Precision DNN train their few widths or bit-widths.

:func:`auto_rule` is ``fn3 train``'s default (``rule="auto"``): the rule measured best for the
family's shape. Nested in **one** level (channels, layers, paths or bits), it trains a tied grid of
levels every step (:func:`grid_specs`: every axis at 100, 75, 50 and 25% of its units, or 8, 6, 4 and
2 bits, and the smallest sub-model), the step along the members' summed gradient at the length of
the longest member's (``spec_loss="norm"``, :func:`fn3.train.resolved_spec_loss`; nested in depth
or in channels alone the mean loss at twice the rate, in paths alone the per-weight mean
``"shared"``): on 6-epoch
CIFAR-10 runs its worst gap to the networks trained alone is smaller than the tied sandwich's
(largest + smallest + one uniform draw tied per kind, the default before) on channels, paths and
bits (layers: -4.7 against -4.6 pt), at 18 epochs every channel width is within 1.1 pt of its own
network (``docs/reproduction.md``), and the family costs what they cost at equal epochs
(0.77-1.04x, step against step: ``benchmarks/family_cost.py``).
Nested in several levels at once a grid or a sandwich's "smallest" is the
corner of all of them (the 2-bit, 25%-wide, shallowest network), which then takes a share of every
step: there :class:`FullPlusODO` measures better (the README's "Which training rule" table has the
numbers and commands).

Example:
    >>> import fn3
    >>> model = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8)
    >>> odo = fn3.OrderedDropout(fn3.space(model), dist="geometric", rho=0.9, seed=0)
    >>> odo.step_specs(0) == odo.step_specs(0)    # same step, same draw
    True
    >>> len(fn3.Sandwich(fn3.space(model), n=2, seed=0).step_specs(0))
    4
    >>> rule = FullPlusODO(fn3.space(model), draws=1, seed=0)
    >>> [s == fn3.space(model).largest() for s in rule.step_specs(0)][0]   # the largest, every step
    True
    >>> auto_rule(fn3.space(model))            # the MLP nests neurons and bits: two levels
    'full+odo'
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from fn3._io import or_list
from fn3.errors import ConfigError
from fn3.spec import Axis, Space, Spec

__all__ = [
    "DISTRIBUTIONS",
    "TIES",
    "FullPlusODO",
    "GRID",
    "ListedSpecs",
    "auto_rule",
    "grid_specs",
    "OrderedDropout",
    "Sandwich",
    "keep_probabilities",
    "sample_blocks",
    "untrained_depths",
]

DISTRIBUTIONS = ("geometric", "uniform")
TIES = ("none", "kind")


def _check(dist: str, rho: float, tie: str = "none") -> None:
    if tie not in TIES:
        raise ConfigError(f"unknown ordered-dropout tie {tie!r}; use one of {', '.join(TIES)}")
    if dist not in DISTRIBUTIONS:
        raise ConfigError(
            f"unknown ordered-dropout distribution {dist!r}; use one of {', '.join(DISTRIBUTIONS)}"
        )
    if not 0.0 < rho <= 1.0:
        raise ConfigError(f"rho must be in (0, 1], got {rho}")


def blocks_from_uniform(axis: Axis, u: float, dist: str, rho: float) -> int:
    """Number of kept blocks for a uniform draw ``u`` in [0, 1) (inverse CDF)."""
    m0, m = axis.min_blocks, axis.num_blocks
    if dist == "uniform":
        return m0 + min(int(u * (m - m0 + 1)), m - m0)
    if rho >= 1.0 or u <= 0.0:
        return m
    # P(k >= m0 + j) = rho^j  <=>  k = m0 + floor(log(u) / log(rho)), truncated at m.
    return min(m, m0 + int(math.floor(math.log(u) / math.log(rho))))


def sample_blocks(
    axis: Axis, generator: torch.Generator | None, dist: str = "geometric", rho: float = 0.9
) -> int:
    """One draw of the number of kept blocks of ``axis``."""
    _check(dist, rho)
    u = float(torch.rand((), generator=generator))
    return blocks_from_uniform(axis, u, dist, rho)


def keep_probabilities(axis: Axis, dist: str = "geometric", rho: float = 0.9) -> list[float]:
    """``P(exactly k blocks kept)`` for ``k = 1..num_blocks`` (zero below the minimum)."""
    _check(dist, rho)
    m0, m = axis.min_blocks, axis.num_blocks
    p = [0.0] * m
    for k in range(m0, m + 1):
        if dist == "uniform":
            p[k - 1] = 1.0 / (m - m0 + 1)
        else:
            p[k - 1] = rho ** (k - m0) * ((1 - rho) if k < m else 1.0)
    return p


def _step_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    # SplitMix-style mixing so that neighbouring (seed, step) pairs give unrelated streams.
    x = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + salt * 0x94D049BB133111EB) & (
        2**63 - 1
    )
    x ^= x >> 31
    return torch.Generator().manual_seed(x)


class OrderedDropout:
    """Ordered-dropout sampler: one prefix :class:`~fn3.Spec` per training step.

    Args:
        space: the model's space (``fn3.space(model)``).
        dist: ``"geometric"`` (default) or ``"uniform"``.
        rho: keep rate of the geometric distribution, shared by every axis (the paper's single
            hyper-parameter).
        seed: the draws are a pure function of ``(seed, step)``.
        tie: ``"none"`` (default): every axis drawn independently; ``"kind"``: one draw per kind.
    """

    def __init__(self, space: Space, dist: str = "geometric", rho: float = 0.9, seed: int = 0,
                 tie: str = "none"):
        _check(dist, rho, tie)
        self.space, self.dist, self.rho, self.seed, self.tie = space, dist, rho, seed, tie

    def sample(self, step: int) -> Spec:
        """The spec of training step ``step``."""
        return self._spec(_step_generator(self.seed, step))

    def _spec(self, g: torch.Generator) -> Spec:
        u = torch.rand(len(self.space), generator=g, dtype=torch.float64).tolist()
        if self.tie == "kind":  # the first axis of each kind lends its draw to the others
            first = {}
            for a, ui in zip(self.space, u, strict=True):
                first.setdefault(a.kind, ui)
            u = [first[a.kind] for a in self.space]
        return self.space.prefix(
            {
                a.name: blocks_from_uniform(a, ui, self.dist, self.rho)
                for a, ui in zip(self.space, u, strict=True)
            }
        )

    def step_specs(self, step: int) -> list[Spec]:
        """The specs trained at ``step`` (one for ordered dropout)."""
        return [self.sample(step)]

    def _draw(self, step: int, i: int) -> Spec:
        """Draw ``i`` of the extra draws of ``step`` (rules that train several specs per step)."""
        return self._spec(_step_generator(self.seed, step, salt=i + 1))

    def to_dict(self) -> dict[str, object]:
        return {"rule": "odo", "dist": self.dist, "rho": self.rho, "seed": self.seed, "tie": self.tie}


class Sandwich(OrderedDropout):
    """US-Nets sandwich rule: the largest, the smallest and ``n`` sampled specs every step."""

    def __init__(
        self, space: Space, n: int = 2, dist: str = "uniform", rho: float = 0.9, seed: int = 0,
        tie: str = "none",
    ):
        super().__init__(space, dist, rho, seed, tie)
        if n < 0:
            raise ConfigError(f"sandwich n must be >= 0, got {n}")
        self.n = n
        self._largest, self._smallest = space.largest(), space.smallest()

    def step_specs(self, step: int) -> list[Spec]:
        gen = [self._draw(step, i) for i in range(self.n)]
        return [self._largest, self._smallest, *gen]

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "rule": "sandwich", "n": self.n}


class FullPlusODO(OrderedDropout):
    """The largest sub-model and ``draws`` ordered-dropout specs at every step (``rule="full+odo"``).

    Args:
        space, dist, rho, seed, tie: as :class:`OrderedDropout`.
        draws: ordered-dropout specs trained beside the largest one each step (>= 1).
    """

    def __init__(
        self, space: Space, draws: int = 1, dist: str = "uniform", rho: float = 0.9, seed: int = 0,
        tie: str = "kind",
    ):
        super().__init__(space, dist, rho, seed, tie)
        if draws < 1:
            raise ConfigError(f"full+odo needs draws >= 1, got {draws}")
        self.draws = draws
        self._largest = space.largest()

    def step_specs(self, step: int) -> list[Spec]:
        """The largest spec first (the teacher, when distilling), then the draws."""
        return [self._largest, *(self._draw(step, i) for i in range(self.draws))]

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "rule": "full+odo", "draws": self.draws}


class ListedSpecs:
    """The largest sub-model and every listed sub-model at every step (``rule="specs"``).

    Slimmable Networks' and Any-Precision's training: when the deployment budgets are known before
    training (four phones, two microcontrollers), train each of them at every step instead of
    drawing. Every listed member is trained as often as its own network would be; sub-models between
    the budgets are never trained as such (the search still reaches them, at lower accuracy). A step
    costs the sum of the members' forward and backward passes.

    ``per_step`` trades that cost for fewer updates per member: each step trains the largest and
    ``per_step - 1`` of the other members in turn (step ``t`` the ones after those of step ``t - 1``,
    round the list), so every member is trained equally often and a resumed run repeats the same
    order. ``rotation="smallest"`` gives the smallest member (fewest kept units) a slot on every other
    step and the other members the remaining slots in turn: the member furthest from the largest,
    which gains least from the largest's updates (2 bits), is trained on half the steps instead of
    one in ``len(specs) - 1``. ``rotation="corners"`` trains the largest and the smallest at every
    step and the other members in turn in the ``per_step - 2`` further slots of every other step
    (``per_step`` of 3 or more): on the default bits grid (8, 6, 4, 2) with ``per_step=3``, 8 and
    2 bits every step and 6 or 4 bits every other, 2.5 passes a step on average. ``rotation="ends"``
    trains the largest and the smallest at every step too, and the other members in turn in the
    ``per_step - 2`` further slots of *every* step: on the five depths of a 5-block stage with
    ``per_step=4``, 5 and 1 blocks every step and two of 4/3/2 blocks in turn (each on two steps of
    three), as many blocks a step as the default grid's 5/4/2/1 with no depth left out. On a model nested
    in bits, where every member costs as much as the largest, two specs a step cost 2 passes against
    5 for five separately trained bit-widths (measured in issue 11 on experiment 5:
    ``docs/reproduction.md``).

    Args:
        space: the model's space.
        specs: the sub-models to deploy (duplicates and the largest are dropped: it always comes first).
        per_step: specs per step, the largest included (at least 2); 0 trains every member every step.
        rotation: ``"even"`` (every member equally often), ``"smallest"`` (the smallest on every
            other step), ``"corners"`` (the smallest every step, the others on every other step) or
            ``"ends"`` (the smallest every step, the others in turn in the further slots of every
            step); only with ``per_step``.

    Example:
        >>> import fn3
        >>> sp = fn3.space(fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8))
        >>> rule = ListedSpecs(sp, [fn3.parse_spec("neurons=0.5", sp), sp.smallest()])
        >>> [s == sp.largest() for s in rule.step_specs(7)]
        [True, False, False]
    """

    def __init__(self, space: Space, specs: Sequence[Spec], per_step: int = 0, rotation: str = "even"):
        if per_step == 1 or per_step < 0:
            raise ConfigError(f"specs per step {per_step} is invalid; expected 0 (every listed spec) or a "
                              "whole number >= 2 (the largest and at least one other)")
        if rotation not in ROTATIONS:
            raise ConfigError(f"rotation {rotation!r} is invalid; expected {or_list(ROTATIONS)}")
        if rotation in ("corners", "ends") and 0 < per_step < 3:
            raise ConfigError(f"rotation {rotation} with {per_step} specs per step leaves no slot for the "
                              "members between the largest and the smallest; expected 3 or more")
        self.space = space
        largest = space.largest()
        self.specs: list[Spec] = [largest]
        for s in specs:
            if s not in self.specs:
                self.specs.append(s)
        self.per_step = per_step
        self.rotation = rotation
        # The member with the fewest kept units summed over axes (fewest bits, channels, blocks; the
        # first on ties): rotations "smallest" and "corners" give it its slots, distill_to="smallest"
        # distils into it; the others share the remaining slots.
        others = self.specs[1:]
        small = min(range(len(others)), key=lambda i: sum(len(kept) for _, kept in others[i]), default=0)
        self.smallest = others[small] if others else largest
        self._middle = others[:small] + others[small + 1:]

    def step_specs(self, step: int) -> list[Spec]:
        """The budgets of step ``step``, the largest first (the teacher, when distilling)."""
        others = self.specs[1:]
        k = self.per_step - 1
        if self.per_step == 0 or k >= len(others):
            return list(self.specs)
        if self.rotation == "smallest":
            return [self.specs[0]] + self._smallest_every_other(step, k)
        if self.rotation == "corners":
            # The largest and the smallest every step; the middle members' k - 1 slots on odd steps,
            # in turn: step 2u+1 takes middle members u*(k-1) .. u*(k-1)+k-2 (mod their number).
            # There are at least two (k >= 2 and k < len(others), else every member is trained above).
            if step % 2 == 0:
                return [self.specs[0], self.smallest]
            u, m = step // 2, len(self._middle)
            return [self.specs[0], self.smallest] + [self._middle[(u * (k - 1) + j) % m]
                                                      for j in range(k - 1)]
        if self.rotation == "ends":
            # The largest and the smallest every step; the middle members' k - 1 slots every step, in
            # turn: step t takes middle members t*(k-1) .. t*(k-1)+k-2 (mod their number), so any m
            # steps train each of the m middle members k - 1 times.
            m = len(self._middle)
            return [self.specs[0], self.smallest] + [self._middle[(step * (k - 1) + j) % m]
                                                      for j in range(k - 1)]
        # Round robin: step t takes members t*k .. t*k+k-1 (mod n), so any n steps train each k times.
        return [self.specs[0]] + [others[(step * k + j) % len(others)] for j in range(k)]

    def _smallest_every_other(self, step: int, k: int) -> list[Spec]:
        """``k`` of the members: the smallest on every even step, the rest round robin in the other slots."""
        # Slots of the middle members used before step t: k per step, less one on each even step.
        used = step * k - (step + 1) // 2
        head = [self.smallest] if step % 2 == 0 else []
        return head + [self._middle[(used + j) % len(self._middle)] for j in range(k - len(head))]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: the rule, every trained spec (the largest first), as :meth:`Spec.to_dict`, the
        specs per step (0: all) and their rotation."""
        return {"rule": "specs", "specs": [s.to_dict(self.space) for s in self.specs],
                "per_step": self.per_step, "rotation": self.rotation}


#: How :class:`ListedSpecs` shares the slots of a step among the members other than the largest.
ROTATIONS = ("even", "smallest", "corners", "ends")


#: Kept fractions of :func:`grid_specs`' default grid (``TrainConfig.grid``): four tied levels, the
#: budgets of the channels experiment (on a 3-block ResNet stage they round to 3, 2 and 1 blocks).
GRID = (1.0, 0.75, 0.5, 0.25)


def grid_specs(space: Space, fractions: Sequence[float] = GRID) -> list[Spec]:
    """One tied spec per fraction: every axis keeps ``round(f * size)`` of its units (at least its
    minimum), so on a bits axis of 8 the grid ``(1, 0.75, 0.5, 0.25)`` is 8, 6, 4 and 2 bits; then
    the smallest sub-model, unless a fraction gave it already.

    Specs that round to the same sub-model appear once, in the order of ``fractions``. The grid
    ends at the smallest sub-model (as the sandwich rule does) so that no member a search may pick
    lies below every trained one: on the paths family (1 to 8 paths) the 12.5% member went from
    24.7% (untrained, 4 points of grid) to 36.8% with it, at 1.0-3.6 pt on the others (6 epochs,
    ``docs/reproduction.md``). On channels, layers and bits of fn3's ResNets the 25% point is the
    smallest already.

    Example:
        >>> import fn3
        >>> sp = fn3.space(fn3.create_model("resnet20", num_classes=10, levels=("layers",)))
        >>> stage = next(iter(sp)).name
        >>> [s.size(stage, sp) for s in grid_specs(sp)]     # blocks of the first stage: 3, 2.25, 1.5, 0.75
        [3, 2, 1]
    """
    specs: list[Spec] = []
    for f in fractions:
        if not 0.0 < f <= 1.0:
            raise ConfigError(f"grid fraction {f!r} is invalid; expected a kept fraction in (0, 1]")
        spec = space.prefix({ax.name: ax.blocks_for(round(f * ax.size)) for ax in space})  # clamped
        if spec not in specs:
            specs.append(spec)
    if fractions and space.smallest() not in specs:
        specs.append(space.smallest())
    return specs


def untrained_depths(space: Space, specs: Sequence[Spec]) -> dict[str, list[int]]:
    """The depths (kept residual blocks) of each ``layers`` axis that none of ``specs`` keeps: the
    sub-models a search or an export can pick that a rule training only ``specs`` never trains as
    such. Axes whose every depth is trained are left out.

    On a 5-block stage the default grid keeps 5, 4, 2 and 1 blocks (``round(2.5)`` is 2): 3 blocks
    is never trained, and on ResNet-32 at 36 epochs it trailed its network trained alone by 3.3 pt
    on held-out test images (4.7 at seed 1), where the grid listing every depth (``--grid
    1,0.8,0.6,0.4,0.2``) was within 0.31 (0.96; ``docs/reproduction.md``). Three-block stages
    (ResNet-20) lose no depth.

    Example:
        >>> import fn3
        >>> sp = fn3.space(fn3.create_model("resnet32", num_classes=10, levels=("layers",)))
        >>> untrained_depths(sp, grid_specs(sp))
        {'stage1.depth': [3], 'stage2.depth': [3], 'stage3.depth': [3]}
        >>> untrained_depths(sp, grid_specs(sp, (1.0, 0.8, 0.6, 0.4, 0.2)))
        {}
    """
    out: dict[str, list[int]] = {}
    for ax in space:
        if ax.kind != "layers":
            continue
        kept = {len(s.kept(ax.name)) for s in specs}  # prefix blocks: a depth is their count
        missing = [n for n in range(ax.min_blocks, ax.num_blocks + 1) if n not in kept]
        if missing:
            out[ax.name] = missing
    return out


def auto_rule(space: Space, grid: Sequence[float] = GRID) -> str:
    """The rule ``rule="auto"`` trains ``space``'s model with: ``"specs"`` (the tied ``grid`` of
    :func:`grid_specs` every step) when its axes nest one level, or ``"sandwich"`` (tied: largest,
    smallest and ``draws`` uniform draws tied per kind) there when ``grid`` is empty; ``"full+odo"``
    when they nest several.

    Example:
        >>> import fn3
        >>> auto_rule(fn3.space(fn3.create_model("resnet20", num_classes=10, levels=("channels",))))
        'specs'
    """
    if len({ax.kind for ax in space}) > 1:
        return "full+odo"
    return "specs" if grid else "sandwich"
