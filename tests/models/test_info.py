"""ModelInfo: the typed view of a nested model's recipe that cost, export and latency code read."""

from __future__ import annotations

import fn3
from fn3.models.info import model_info


def test_builtin_model_info():
    info = model_info(fn3.create_model("resnet20", num_classes=10, in_channels=3, input_size=16))
    assert (info.source, info.name, info.input_shape, info.is_user_model) == (
        "registry", "resnet20", (3, 16, 16), False)
    mlp = fn3.create_model("mlp", in_channels=1, input_size=28)
    assert info.config["levels"] and fn3.cost.cost_plan(mlp).input_shape == (1, 28, 28)  # the recorded shape


def test_user_model_info_and_no_recipe():
    from fn3.convert.user import UserModel, build_user_model

    desc = UserModel("fn3.export.user:example_net", {"width": 4}, (1, 8, 8), ("channels",))
    model = build_user_model(desc)[0]
    info = model_info(model)
    assert (info.source, info.name, info.input_shape, info.is_user_model) == (
        "factory", "fn3.export.user:example_net", (1, 8, 8), True)
    plain = fn3.nn.NestedLinear(4, 2)
    assert model_info(plain) is None
    plain.fn3_config = {"levels": []}  # a record without a name is no recipe
    assert model_info(plain) is None
    assert fn3.cost(model, fn3.space(model).largest(), "params") == fn3.cost(
        model, fn3.space(model).largest(), "params", input_shape=(1, 8, 8))
