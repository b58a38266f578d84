"""`Evaluator`: scores sub-models by held-out accuracy, fast enough for a search.

Three things make it fast:

* **a cache**: each distinct :class:`~fn3.Spec` is scored once (``evals`` counts scorings,
  ``hits`` the requests answered from the cache);
* **pre-built tensors**: the validation (and calibration) batches are materialised once;
* **shared prefixes**: :meth:`Evaluator.evaluate_many` scores a batch of specs together and runs each
  distinct prefix of the forward pass once (the layers before the first layer whose kept blocks
  differ), for any nested model whose forward ``torch.fx`` can cut into segments
  (:mod:`fn3.search._segments`: built-in models and models nested by :func:`fn3.nest_` alike). The
  heuristic's candidates differ from their parent in one block, so most of them recompute only the
  layers from that block onwards. A model that cannot be cut is scored spec by spec.

With ``recalibrate`` (a few training batches), each spec is scored after re-estimating its
BatchNorm statistics (:func:`fn3.evaluate.bn_recalibrated`); the shared statistics are restored
afterwards. The scores are bit-identical to :func:`fn3.evaluate.accuracy` with or without the
prefix sharing.

:meth:`Evaluator.attach_journal` makes the scores durable: a killed search run again with the journal
resumed re-scores nothing it had already scored (:mod:`fn3.search.journal`).

Example:
    >>> import torch, fn3
    >>> from fn3.search import Evaluator
    >>> model = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8, hidden=(32, 32))
    >>> val = [(torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,)))]
    >>> ev = Evaluator(model, val)
    >>> space = fn3.space(model)
    >>> scores = ev.evaluate_many([space.largest(), space.smallest(), space.largest()])
    >>> scores[0] == scores[2], ev.evals, ev.hits
    (True, 2, 1)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from itertools import islice
from pathlib import Path

import torch
from torch import nn

from fn3.distributed import rank, world_size
from fn3.errors import ConfigError
from fn3.evaluate import accuracy, bn_recalibrated
from fn3.nest import current_spec, set_active, slots, space
from fn3.search._segments import random_before_bn, score_tree, segments_of, shared_fraction
from fn3.search.journal import ScoreJournal, fingerprint
from fn3.spec import Spec

__all__ = ["Evaluator"]

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def _materialise(batches: Batches, what: str,
                 limit: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for item in islice(batches, limit):
        if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], torch.Tensor)):
            raise ConfigError(f"{what} batches must be (inputs, labels) tensor pairs")
        x, y = item
        out.append((x.detach().contiguous(), torch.as_tensor(y).detach()))
    return out


def _bns(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None]


#: Share the forward's common prefixes only when that saves at least this share of the segment runs
#: (``shared_fraction``); below it, one whole forward per spec is as fast or faster.
MIN_SHARED = 0.15

class Evaluator:
    """Validation accuracy of sub-models, cached per spec, scored in batches with shared prefixes.

    Args:
        model: the trained nested model (its state is restored after every call).
        batches: the held-out validation batches ``(x, y)`` (never the test set); kept in memory.
        recalibrate: training batches for BatchNorm re-estimation per spec, or ``None`` to use the
            shared statistics. Ignored for models without BatchNorm.
        num_batches: calibration batches used (the first ones).
        reuse: share the common prefix of the forward pass across specs, for any model whose forward
            :func:`~fn3.search._segments.segments_of` can cut (else, or with ``False``, spec by spec;
            the scores are the same either way). :attr:`reuse` says whether it is in use.
    """

    def __init__(self, model: nn.Module, batches: Batches, *, recalibrate: Batches | None = None,
                 num_batches: int = 20, reuse: bool = True):
        if num_batches < 1:
            raise ConfigError(f"num_batches must be >= 1, got {num_batches}")
        self.model = model
        self.space = space(model)
        self._val = _materialise(batches, "validation")
        if not self._val:
            raise ConfigError("the Evaluator needs at least one validation batch")
        self._calib = (_materialise(recalibrate, "calibration", num_batches)
                       if recalibrate is not None and _bns(model) else None)
        self.num_batches = num_batches
        self._slots = slots(model)
        self._segments = segments_of(model) if reuse else None
        if self._segments is not None and not self._segments_match():
            self._segments = None  # the model's forward is not what the segments assume
        if self._segments is not None and self._calib is not None and random_before_bn(self._segments):
            self._segments = None  # dropout would draw other masks in another order: not the same statistics
        self._cache: dict[Spec, float] = {}
        self._journal: ScoreJournal | None = None
        self.evals = 0
        self.hits = 0
        self.resumed = 0
        self.seconds = 0.0

    @property
    def reuse(self) -> bool:
        """True when prefix sharing is in use."""
        return self._segments is not None

    @property
    def recalibrate(self) -> bool:
        return self._calib is not None

    @property
    def num_samples(self) -> int:
        return sum(len(y) for _, y in self._val)

    @property
    def evals_per_second(self) -> float:
        return self.evals / self.seconds if self.seconds > 0 else float("inf")

    def __call__(self, spec: Spec) -> float:
        return self.evaluate_many([spec])[0]

    def cached(self, spec: Spec) -> float | None:
        """The cached score of ``spec``, or ``None``."""
        return self._cache.get(spec)

    def fingerprint(self) -> str:
        """SHA-256 of everything a score depends on: weights, validation and calibration tensors, settings."""
        return fingerprint(self.model, self._val, self._calib or [], self.num_batches)

    def attach_journal(self, path: str | Path, *, resume: bool = False) -> int:
        """Record every new score in the journal at ``path`` (fsynced per scored batch).

        With ``resume``, the scores already in the journal fill the cache first, so a search that was
        killed and is run again replays its decisions without scoring those specs again (see
        :mod:`fn3.search.journal`). Under torchrun every rank reads the journal and rank 0 writes it.

        Returns:
            The number of scores taken from the journal (also in :attr:`resumed`).

        Raises:
            ConfigError: ``resume`` and the journal was written for another model, data or setup.
            FileFormatError: ``resume`` and ``path`` is not a journal.
        """
        if self._journal is not None:
            self._journal.close()
        self._journal = ScoreJournal.open(path, self.space, self.fingerprint(), resume=resume,
                                          write=rank() == 0,
                                          meta={"samples": self.num_samples, "recalibrate": self.recalibrate})
        fresh = {s: a for s, a in self._journal.scores.items() if s not in self._cache}
        self._cache.update(fresh)
        self.resumed = len(fresh)
        return self.resumed

    def close(self) -> None:
        """Close the journal, if one is attached."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def clear(self) -> None:
        """Forget every cached score and reset the counters."""
        self._cache.clear()
        self.evals = self.hits = 0
        self.seconds = 0.0

    def evaluate_many(self, specs: Iterable[Spec]) -> list[float]:
        """Accuracy of every spec, in order; new distinct specs are scored together."""
        specs = [self.space.validate(s) for s in specs]
        new = list(dict.fromkeys(s for s in specs if s not in self._cache))
        if new:
            start = time.perf_counter()
            scores = self._score_distributed(new) if world_size() > 1 else self._score(new)
            self.seconds += time.perf_counter() - start
            self._cache.update(zip(new, scores, strict=True))
            self.evals += len(new)
            if self._journal is not None:
                self._journal.append(new, scores)
        self.hits += len(specs) - len(new)
        return [self._cache[s] for s in specs]

    # -- scoring --------------------------------------------------------------------------------
    def _score_distributed(self, specs: Sequence[Spec]) -> list[float]:
        """Under torchrun: rank r scores specs r, r + world, ...; one all-reduce gives every rank all
        scores, so every rank holds the same cache and the search proceeds identically everywhere.

        Each spec is scored by one rank on the whole validation split with the same calibration
        batches, so the scores equal a single process's. BatchNorm synchronisation is switched off
        meanwhile: ranks re-estimate statistics for different specs at the same time.
        """
        import torch.distributed as dist

        r, w = rank(), world_size()
        mine = list(specs[r::w])
        syncing = [m for m in self.model.modules() if getattr(m, "sync", False) is True]
        for m in syncing:
            m.sync = False
        try:
            local = self._score(mine) if mine else []
        finally:
            for m in syncing:
                m.sync = True
        out = torch.zeros(len(specs), dtype=torch.float64)
        out[r::w] = torch.tensor(local, dtype=torch.float64)
        dist.all_reduce(out)  # every position was filled by exactly one rank
        return out.tolist()

    def _score(self, specs: Sequence[Spec]) -> list[float]:
        model = self.model
        was_training = model.training
        previous = current_spec(model)
        bns = _bns(model) if self._calib is not None else []
        saved = [(bn.momentum, bn.running_mean.clone(), bn.running_var.clone(),
                  bn.num_batches_tracked.clone()) for bn in bns]
        try:
            model.eval()
            if self._segments is not None and shared_fraction(self._segments, specs) >= MIN_SHARED:
                for bn in bns:
                    bn.momentum = None  # cumulative average, as fn3.evaluate.recalibrate_bn does
                calib = None if self._calib is None else [x for x, _ in self._calib]
                return score_tree(self._segments, self._slots, specs, self._val, calib)
            out = []
            for s in specs:
                if self._calib is None:
                    out.append(accuracy(model, self._val, s))
                else:
                    with bn_recalibrated(model, s, self._calib, self.num_batches):
                        out.append(accuracy(model, self._val, s))
            return out
        finally:
            for bn, (momentum, mean, var, count) in zip(bns, saved, strict=True):
                bn.momentum = momentum
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
                bn.num_batches_tracked.copy_(count)
            set_active(self.model, previous)
            model.train(was_training)

    @torch.no_grad()
    def _segments_match(self) -> bool:
        """Check once that running the segments equals ``model(x)`` (first batch) for the full and
        the smallest sub-model: a cut the trace got wrong (a Python branch on the sub-model frozen
        by the trace, a gate whose skipped child is not the identity) shows in one of the two."""
        model = self.model
        was_training, previous = model.training, current_spec(model)
        try:
            model.eval()
            x = self._val[0][0][:8]
            for spec in (None, self.space.smallest()):
                set_active(model, spec)
                y = x
                for seg in self._segments or []:
                    y = seg.run(y)
                if not torch.equal(y, model(x)):
                    return False
            return True
        finally:
            set_active(model, previous)
            model.train(was_training)
