"""`compiled`: an exported model compiled for CPU inference, its quantizers fused into one loop each.

In eager PyTorch an activation quantizer is four passes over its feature map (``div``, ``round_``,
``clamp_``, ``mul_``) beside a convolution that runs in one; that is the 1.1-1.2x an eager quantized
export costs over its float twin (``docs/benchmarks.md``, export section). ``torch.compile`` with
Inductor's *freezing* (weights as constants: BatchNorm folded into the convolution, weights packed
for oneDNN once, ReLU and the residual addition fused into the convolution) makes each quantizer one
fused loop, usually written into the convolution output's own memory, and runs the whole model
faster than the eager float model. fn3's quantizer keeps its step a tensor under the compiler
(:class:`fn3.nn.act_quant.ActQuant`), so an export of fn3's networks or of a network of your own
compiles to a single graph, with no break.

What stays: PyTorch's float CPU convolutions have no rounding step they could fuse, so the
quantized model still reads and writes each quantized feature map once more than its float twin
(measured 1.06-1.12x of the compiled float twin on ResNet-20 at batch 64; ``python
benchmarks/export.py``). ``compiled(model, integer=True)`` runs the quantized convolutions on int8
kernels instead (:mod:`fn3.export.integer`): 0.47-0.94x of the compiled float twin there. The values are
those of the eager export except that a folded BatchNorm rounds differently, so an activation within
float rounding of a step boundary may take the neighbouring step (the step-boundary tolerance of
:mod:`fn3.export.onnx`).

Inductor needs a C++ compiler on the machine; the first call compiles (tens of seconds for a
ResNet-20), later calls with the same input shape reuse the code. Call it without autograd
(``torch.no_grad()`` or ``torch.inference_mode()``): freezing applies to inference only.

Example:
    >>> import torch, fn3
    >>> from fn3.export import export
    >>> from fn3.export.fast import compiled
    >>> net = fn3.create_model("resnet20", num_classes=10, in_channels=3).eval()
    >>> small = export(net, fn3.space(net).uniform({"channels": 0.5, "bits": 4}))
    >>> fast = compiled(small)                                       # integer=True: int8 kernels
    >>> with torch.no_grad():                                        # doctest: +SKIP
    ...     fast(torch.randn(64, 3, 32, 32)).shape                   # compiles on this first call
    torch.Size([64, 10])
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["compiled"]


class _Frozen(nn.Module):
    """``torch.compile`` of ``model``, each call under Inductor's ``freezing`` config.

    The global config, not ``torch.compile(options={"freezing": True})``: with the option alone,
    Inductor (torch 2.13) did not turn an int8 weight into a constant, and its int8 convolution
    pattern then failed to compile (``onednn.qconv_prepack`` on a graph input). The config is read
    when a call compiles, so it is set around every call (a context switch of a few microseconds).
    """

    def __init__(self, model: nn.Module, dynamic: bool):
        super().__init__()
        self._compiled = torch.compile(model, dynamic=dynamic)  # holds model (its ``_orig_mod``)

    def forward(self, *args, **kwargs):
        with torch._inductor.config.patch(freezing=True):
            return self._compiled(*args, **kwargs)


def compiled(model: nn.Module, *, dynamic: bool = False, integer: bool = False) -> nn.Module:
    """``torch.compile(model, dynamic=dynamic)`` with Inductor's freezing, in eval mode.

    ``dynamic=False`` (the default) compiles once per input shape, the fastest code for a server
    that sees one batch size; ``True`` compiles one graph for every batch size. The returned module
    shares ``model``'s weights; change them and call :func:`compiled` again (frozen weights are
    constants of the compiled code). Every export runs the same ``forward`` code, and
    ``torch._dynamo`` keeps at most ``torch._dynamo.config.recompile_limit`` (8) compiled versions
    of one code object, then runs it eagerly with a warning: a process that compiles many sub-models
    (or batch sizes) calls ``torch._dynamo.reset()`` between them.

    ``integer=True`` (an :class:`~fn3.export.user.Exported` model) first converts its quantized
    convolutions and linear layers to int8 kernels (:func:`fn3.export.integer.integer`): on a CPU
    with VNNI the fastest way to run a quantized export (0.47-0.94x its compiled float twin at
    batch 64 on ResNet-20, ``docs/benchmarks.md``), its values those of the export up to float
    rounding and rounding ties. The converted model is a copy: it does not follow later changes of
    ``model``'s weights.
    """
    if integer:
        from fn3.export.integer import integer as to_integer

        model = to_integer(model)
    return _Frozen(model.eval(), dynamic)
