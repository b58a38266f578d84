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
