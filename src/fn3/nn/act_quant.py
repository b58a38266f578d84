"""The activation quantizer of a deployed model: the values of training's, in the fewest passes.

:class:`ActQuant` is what an activation quantizer becomes once its bits are chosen: the extracted
form of :class:`~fn3.nn.base.NestedActQuant` (``extract()``, so a user's own network extracted by
:func:`fn3.export.extract_submodel` runs it) and the quantizer of :func:`fn3.export.export`'s models
(re-exported as ``fn3.export.ActQuant``). It computes exactly :func:`fn3.nn.functional.fake_quant_act`'s
forward value, with one new tensor and three in-place passes instead of training's five out-of-place
ops (which keep the gradient path). Under ``torch.compile`` it keeps its step a tensor, so the graph
does not break at the quantizer and the compiler fuses the four passes into one
(:func:`fn3.export.compiled`).

Example:
    >>> import torch
    >>> q = ActQuant(torch.tensor(3.0), planes=(0, 1))          # 2 bits of 8, clip at 3: step 1
    >>> q(torch.tensor([-1.0, 0.4, 1.6, 9.0])).tolist()
    [0.0, 0.0, 2.0, 3.0]
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import fx, nn

from fn3.nn.functional import act_step, act_values, check_scheme, clip_act, top_code

__all__ = ["ActQuant", "QuantInput", "is_prefix", "plan_in_place", "relu_unless_quantized", "relus_kept"]


def is_prefix(planes: Sequence[int]) -> bool:
    """True when ``planes`` is ``(0, 1, ..., c-1)``: the top ``c`` bits."""
    return tuple(planes) == tuple(range(len(planes)))



class ActQuant(nn.Module):
    """Activation quantizer of training: clip to ``[0, alpha]`` (or ``[-alpha, alpha]``), then quantize.

    ``"centred"``: ``y = round(clip(x) / step_c) * step_c`` with ``step_c = |alpha| / (2^c - 1)``
    (unsigned) or ``|alpha| / (2^(c-1) - 1)`` (signed), ``c = len(planes)``. ``"truncate"``: the
    ``B``-bit code with the dropped planes cleared. Either way the forward value of
    :func:`fn3.nn.functional.fake_quant_act`.
    """

    def __init__(
        self,
        alpha: torch.Tensor | float,
        *,
        planes: Sequence[int],
        total_bits: int = 8,
        signed: bool = False,
        scheme: str = "centred",
    ):
        super().__init__()
        self.planes, self.total_bits, self.signed = (
            tuple(int(p) for p in planes),
            int(total_bits),
            bool(signed),
        )
        self.scheme = check_scheme(scheme)
        self.register_buffer(
            "alpha", torch.as_tensor(alpha, dtype=torch.float32).detach().clone().reshape(())
        )
        full = (1 << total_bits) - 1
        self._mask = None if is_prefix(self.planes) else sum(1 << (total_bits - 1 - p) for p in self.planes)
        self._mask = self._mask if self._mask != full else None
        self._cached: tuple[int, tuple[float, float, float]] | None = None

    @property
    def bits(self) -> int:
        return len(self.planes)

    def step(self) -> torch.Tensor:
        """One step of the output grid (0-dim): of the ``c``-bit code (``"centred"``) or of the
        ``B``-bit code (``"truncate"``)."""
        bits = self.bits if self.scheme == "centred" else self.total_bits
        return act_step(self.alpha, bits, self.signed)

    def _bounds(self) -> tuple[float, float]:
        """``(lowest code, highest code)`` of the ``"centred"`` grid: they depend on the bits only."""
        top = float(top_code(self.bits, self.signed))
        return -top if self.signed else 0.0, top

    def _grid(self) -> tuple[float, float, float]:
        """``(step, lowest code, highest code)`` of the ``"centred"`` grid, as Python floats, cached
        until ``alpha`` changes (loading fills it in place)."""
        if self._cached is None or self._cached[0] != self.alpha._version:
            lo, hi = self._bounds()
            self._cached = (self.alpha._version, (float(self.step()), lo, hi))
        return self._cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scheme == "centred" and torch.compiler.is_compiling():
            # Under torch.compile the step stays a tensor (a Python float would break the graph at
            # .item()), so the compiler fuses the four passes into one loop, usually into the
            # BatchNorm / ReLU before it: the values are those of the eager branch below.
            lo, hi = self._bounds()
            step = self.step()
            return torch.clamp(torch.round(x / step), lo, hi) * step
        if self.scheme == "centred" and not torch.jit.is_tracing():
            # The same values as clip_act + act_values (round(clip(x) / step) * step): the clip is
            # done on the rounded codes instead, where it is the same. One new tensor and three
            # in-place passes (~3x faster than the five out-of-place ops; fake_quantize_per_tensor_
            # affine, one fused op, measured ~10x slower than both on this CPU).
            step, lo, hi = self._grid()
            return torch.div(x, step).round_().clamp_(lo, hi).mul_(step)
        xc = clip_act(x, self.alpha, self.signed)
        return act_values(xc, self.alpha, self.total_bits, self.bits, self.signed, self._mask, self.scheme)

    def extra_repr(self) -> str:
        return (
            f"bits={self.bits}, planes={list(self.planes)}, total_bits={self.total_bits}, "
            f"signed={self.signed}, scheme={self.scheme}"
        )


class QuantInput(nn.Sequential):
    """``Sequential(ActQuant, layer)``: a layer (``nn.Conv2d``, ``nn.Linear``, ...) reading its input
    through its activation quantizer, what a nested layer with an ``act_quant`` extracts to.

    Its values are exactly those of the two modules in turn. When :func:`plan_in_place` found that
    nothing else reads the input (a BatchNorm output, say), it computes the quantized values in the
    input's own memory in inference (no autograd, not traced): no new tensor, which on a CPU is about
    half of what a quantizer costs beside a ReLU (``benchmarks/export.py``, the PyTorch column of the
    quantized-vs-float table). The float twin's ReLU standing in for the quantizer
    (:func:`fn3.export.float_twin`) runs in place at the same sites, so the comparison stays fair.

    Example:
        >>> import torch
        >>> pair = QuantInput(ActQuant(torch.tensor(3.0), planes=(0, 1)), nn.Linear(4, 2))
        >>> pair.inplace = True
        >>> x = torch.tensor([[-1.0, 0.4, 1.6, 9.0]])
        >>> with torch.no_grad():
        ...     expected = pair[1](pair[0](x))
        ...     bool(torch.equal(pair(x), expected)), x.tolist()    # x now holds the quantized values
        (True, [[0.0, 0.0, 2.0, 3.0]])
    """

    inplace: bool = False  # set by plan_in_place: the input is read by this pair only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.inplace and len(self) == 2 and self._fast(x)):
            return super().forward(x)
        act, layer = self[0], self[1]
        if isinstance(act, nn.ReLU):  # the float twin's stand-in for the quantizer
            return layer(torch.relu_(x))
        step, lo, hi = act._grid()  # what ActQuant.forward computes, in x's memory
        return layer(x.div_(step).round_().clamp_(lo, hi).mul_(step))

    def _fast(self, x: torch.Tensor) -> bool:
        act = self[0]
        if isinstance(act, ActQuant):
            if act.scheme != "centred" or act._forward_hooks or act._forward_pre_hooks:
                return False
        elif not isinstance(act, nn.ReLU) or act._forward_hooks or act._forward_pre_hooks:
            return False
        if isinstance(x, fx.Proxy) or torch.jit.is_tracing() or torch.compiler.is_compiling():
            return False
        return not (torch.is_grad_enabled() and x.requires_grad) and x.is_floating_point()


#: Producers whose output is a new tensor: a pair reading one of them, and nothing else reading it,
#: may compute its codes in that memory.
_FRESH_MODULES = (nn.modules.batchnorm._BatchNorm, nn.modules.conv._ConvNd, nn.Linear, QuantInput)
_FRESH_FUNCTIONS = (operator.add, torch.add, torch.relu, F.relu)


def _fresh(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        mod = modules.get(str(node.target))
        if isinstance(mod, nn.ReLU):
            return not mod.inplace
        return isinstance(mod, _FRESH_MODULES)
    if node.op == "call_function":
        return node.target in _FRESH_FUNCTIONS and not node.kwargs.get("inplace", False)
    return node.op == "call_method" and node.target in ("add", "relu")


class _PairTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, name: str) -> bool:
        return isinstance(m, (QuantInput, ActQuant)) or super().is_leaf_module(m, name)


def plan_in_place(module: nn.Module) -> int:
    """Mark each :class:`QuantInput` of ``module`` whose input nothing else reads (``inplace``).

    Reads ``module``'s forward with ``torch.fx``: a pair may overwrite its input when, at every call,
    that input is a new tensor (the output of a BatchNorm, a convolution, a linear layer, an addition
    or an out-of-place ReLU) read by this pair alone. A forward ``torch.fx`` cannot trace (data-
    dependent control flow) leaves every pair as it is: the values are the same either way, only one
    pass slower. Returns the number of pairs marked. A forward hook that keeps a reference to such an
    input (a feature-extraction hook on the BatchNorm before a marked pair) sees it overwritten: set
    ``pair.inplace = False`` on that pair.

    Example:
        >>> import torch
        >>> class Block(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.bn = nn.BatchNorm2d(4)
        ...         self.conv = QuantInput(ActQuant(torch.tensor(2.0), planes=(0, 1)), nn.Conv2d(4, 4, 1))
        ...     def forward(self, x):
        ...         return self.conv(self.bn(x)) + x
        >>> plan_in_place(Block())
        1
    """
    modules = dict(module.named_modules())
    pairs = {name: m for name, m in modules.items() if isinstance(m, QuantInput)}
    if not pairs:
        return 0
    try:
        graph = _PairTracer().trace(module)
    except Exception:  # noqa: BLE001 - any forward torch.fx cannot read: nothing is marked
        return 0
    safe: dict[str, bool] = {}
    for node in graph.nodes:
        if node.op == "call_module" and str(node.target) in pairs and node.args:
            arg = node.args[0]
            ok = isinstance(arg, fx.Node) and len(arg.users) == 1 and _fresh(arg, modules)
            safe[str(node.target)] = safe.get(str(node.target), True) and ok
    for name, pair in pairs.items():
        pair.inplace = safe.get(name, False)
    return sum(p.inplace for p in pairs.values())


_ELIDE = [True]  # relu_unless_quantized leaves the ReLU out; relus_kept() puts it back


@contextmanager
def relus_kept() -> Iterator[None]:
    """Within this block :func:`relu_unless_quantized` always applies its ReLU.

    The cost plan traces the nested model to price the *float* sub-model a latency back-end runs
    (quantizers dropped, so the ReLU is back): it traces inside this block. Not thread-safe (a
    module-level switch, like ``torch.no_grad``'s counterpart in Python code).
    """
    _ELIDE.append(False)
    try:
        yield
    finally:
        _ELIDE.pop()


def relu_unless_quantized(x: torch.Tensor, consumer: nn.Module) -> torch.Tensor:
    """``relu(x)``, or ``x`` itself when ``consumer`` starts with a clip at 0 of its own.

    A consumer with an unsigned activation quantizer clips to ``[0, alpha]`` as ``min(relu(x),
    alpha)``, so a ReLU right before it changes neither a value nor a gradient: leaving it out saves
    one pass over the feature map, in training and in the deployed model alike. ``consumer`` is a
    nested layer with an ``act_quant``, or its extracted form ``Sequential(ActQuant, layer)``, or
    that form with the quantizer replaced by an ``nn.ReLU`` (:func:`fn3.export.float_twin`); once
    the quantizer is gone altogether (a float sub-model), the ReLU is applied here again. The check
    reads only module attributes, so ``torch.fx`` traces it as a constant.

    Example:
        >>> conv = nn.Sequential(ActQuant(torch.tensor(2.0), planes=(0, 1)), nn.Identity())
        >>> relu_unless_quantized(torch.tensor([-1.0, 1.0]), conv).tolist()   # the quantizer clips
        [-1.0, 1.0]
        >>> relu_unless_quantized(torch.tensor([-1.0, 1.0]), nn.Identity()).tolist()
        [0.0, 1.0]
    """
    if _ELIDE[-1]:
        if isinstance(consumer, nn.Sequential):
            q = consumer[0] if len(consumer) else None
        else:
            q = getattr(consumer, "act_quant", None)
        unsigned_quantizer = getattr(q, "signed", True) is False and hasattr(q, "alpha")
        if isinstance(q, nn.ReLU) or unsigned_quantizer:
            return x  # the consumer clips at 0 itself
    return torch.relu(x)
