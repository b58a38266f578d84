"""Registering a conversion for a plain type: refused when it would clash, forgotten when asked."""

from __future__ import annotations

import pytest
from torch import nn

from fn3.convert.rules import Conversion, Role, conversion_for, register_conversion, unregister_conversion
from fn3.errors import ConfigError


def _noop(*args):
    return None


def test_a_role_name_belongs_to_one_type_and_builtin_roles_are_reserved():
    register_conversion(Conversion(nn.Embedding, _noop, _noop, (Role("t_out", produces=True),)))
    try:
        with pytest.raises(ConfigError, match="role 't_out' is already taken"):
            register_conversion(Conversion(nn.EmbeddingBag, _noop, _noop, (Role("t_out"),)))
        with pytest.raises(ConfigError, match="role 'linear_out' is already taken"):
            register_conversion(Conversion(nn.EmbeddingBag, _noop, _noop, (Role("linear_out"),)))
        with pytest.raises(ConfigError, match="has kind 'bits'"):
            register_conversion(Conversion(nn.EmbeddingBag, _noop, _noop, (Role("u", kind="bits"),)))
        with pytest.raises(ConfigError, match="is not an nn.Module type"):
            register_conversion(Conversion(int, _noop, _noop))  # type: ignore[arg-type]
        assert conversion_for(nn.Embedding(2, 2)) is not None
        assert conversion_for(nn.EmbeddingBag(2, 2)) is None
    finally:
        unregister_conversion(nn.Embedding)
    assert conversion_for(nn.Embedding(2, 2)) is None
    register_conversion(Conversion(nn.EmbeddingBag, _noop, _noop, (Role("t_out"),)))  # the name is free again
    unregister_conversion(nn.EmbeddingBag)


class Scale(nn.Linear):
    """A plain type fn3 does not know: y = x @ W.T, no bias."""

    def __init__(self, n: int, m: int):
        super().__init__(n, m, bias=False)


def _analyse_scale(an, node, name, mod, feat):
    from fn3.convert.groups import Member

    out = an.fresh(node, 1, name)
    an.g.add(out.gid, Member(name, "scale_out"))
    if feat is not None:
        an.g.freeze(feat.gid, f"{name} reads it whole")
    return out


def _nested_scale(mod, roles, bits):
    from fn3.nn import NestedLinear

    slot, _ = roles.get("scale_out", (None, 1))
    return NestedLinear(mod.in_features, mod.out_features, False, out_axis=slot, **bits)


def test_a_quantized_conversion_gets_bits_axes():
    """Conversion(quantized=True): the registered type gets weight- and activation-bits axes like a
    Linear, its quantizer's clip is set from the example inputs, and fewer bits cost fewer bits and
    extract to what the nested model computes."""
    import torch

    import fn3
    from fn3.export import extract_submodel

    roles = (Role("scale_out", produces=True, permute=(("weight", 0),)),)
    rule = Conversion(Scale, _analyse_scale, _nested_scale, roles, quantized=True)
    register_conversion(rule)
    try:
        torch.manual_seed(0)
        net = nn.Sequential(Scale(4, 16), nn.ReLU(), nn.Linear(16, 2))
        x = torch.randn(32, 4) * 2
        report = fn3.nest_(net, x, levels="neurons,bits", verbose=False)
        space = fn3.space(net)
        assert {"0.wbits", "0.abits"} <= set(space.names) and "0.wbits" in report.bits
        assert net[0].act_quant.alpha.item() == pytest.approx(x.abs().max().item())  # signed input
        full = space.largest()
        two = space.spec(**{"0.wbits": 2, "0.abits": 2})  # the other axes full
        assert fn3.cost(net, two, "bits", input_shape=(4,)) < fn3.cost(net, full, "bits", input_shape=(4,))
        sub = extract_submodel(net, two)
        with torch.no_grad(), fn3.active(net.eval(), two):
            ref = net(x)
        assert (sub(x) - ref).abs().max().item() <= 1e-5
        assert not torch.allclose(sub(x), extract_submodel(net, full)(x))
    finally:
        unregister_conversion(Scale)


def test_a_quantized_conversion_whose_twin_has_no_quantizer_is_refused():
    import torch

    import fn3
    from fn3.errors import NestingError
    from fn3.nn import NestedLinear

    def plain_twin(mod, roles, bits):  # ignores the bits it is given
        return NestedLinear(mod.in_features, mod.out_features, False)

    register_conversion(Conversion(Scale, _analyse_scale, plain_twin, (Role("scale_out", produces=True),),
                                   quantized=True))  # fmt: skip
    try:
        with pytest.raises(NestingError, match="has no act_quant"):
            fn3.nest_(nn.Sequential(Scale(4, 8), nn.ReLU(), nn.Linear(8, 2)), torch.zeros(1, 4),
                      levels="bits", verbose=False)  # fmt: skip
    finally:
        unregister_conversion(Scale)
