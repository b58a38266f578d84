"""TrainConfig normalises what a file or a flag gives it, so equal configs compare (and hash) equal."""

from __future__ import annotations

from fn3.config import CONFIG_VERSION, TrainConfig


def test_levels_given_as_a_string_become_a_tuple():
    cfg = TrainConfig(levels="channels, bits")
    assert cfg.levels == ("channels", "bits")
    assert cfg == TrainConfig(levels=["channels", "bits"]) == TrainConfig(levels=("channels", "bits"))
    assert hash(cfg) == hash(TrainConfig(levels=("channels", "bits")))
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig(levels=None).levels is None and TrainConfig(eval_specs=["largest"]).eval_specs == (
        "largest",
    )


def test_a_version_1_config_summed_its_losses():
    """Runs written before spec_loss existed summed the losses of a step's specs: resuming them must too."""
    old = TrainConfig().to_dict()
    old["version"] = 1
    del old["spec_loss"], old["zero_init_residual"]
    assert TrainConfig.from_dict(old).spec_loss == "sum"
    assert TrainConfig().spec_loss == "auto"
    assert TrainConfig.from_dict(TrainConfig(spec_loss="sum").to_dict()).spec_loss == "sum"


def test_auto_of_a_version_3_config_keeps_the_loss_it_trained_with():
    """Config version 4 made ``auto`` the norm-matched sum under the grid; a run written before (its
    ``auto`` was the per-weight mean there) must resume with the per-weight mean, and say so."""
    import fn3
    from fn3.train import resolved_spec_loss

    one = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("channels",))
    two = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8,
                           levels=("channels", "bits"))
    old = TrainConfig(model="resnet20").to_dict()
    assert old["version"] == CONFIG_VERSION and old["spec_loss"] == "auto"
    old["version"] = 3
    cfg = TrainConfig.from_dict(old)
    assert cfg.spec_loss == "auto-v3"
    assert resolved_spec_loss(one, cfg) == "shared"  # the grid, as version 3 trained it
    assert resolved_spec_loss(two, cfg) == "mean"  # full+odo draws: mean in every version
    assert resolved_spec_loss(one, TrainConfig.from_dict(TrainConfig(model="resnet20").to_dict())) == "mean"
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # written again at the current version, still auto-v3
    old["spec_loss"] = "sum"  # an explicit loss is kept as it is
    assert TrainConfig.from_dict(old).spec_loss == "sum"


def test_a_family_nested_in_depth_defaults_to_the_mean_loss_at_twice_the_rate():
    """Config version 6: ``spec_loss="auto"`` and ``lr=None`` give a family nested in depth alone the mean
    loss at lr 0.2 (the rule measured best there; since version 9 channels alone too), a family nested
    in several levels the base rate; a given rate or loss is kept; a version 4-5 run resumes with the
    norm-matched sum at its written rate."""
    import pytest

    import fn3
    from fn3.errors import ConfigError
    from fn3.train import make_optimizer, resolved_lr, resolved_spec_loss

    def net(*levels: str):
        return fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=levels)

    deep, wide, both = net("layers"), net("channels"), net("layers", "channels")
    cfg = TrainConfig()
    assert cfg.lr is None and TrainConfig.from_dict(cfg.to_dict()).lr is None
    assert [(resolved_spec_loss(m, cfg), resolved_lr(m, cfg)) for m in (deep, wide, both)] == [
        ("mean", 0.2), ("mean", 0.2), ("mean", 0.1)]  # both: full+odo draws, the base rate
    assert make_optimizer(deep, cfg).param_groups[0]["lr"] == 0.2
    assert resolved_lr(deep, cfg.replace(lr=0.05)) == 0.05  # a given rate is the rate
    assert resolved_lr(deep, cfg.replace(spec_loss="norm")) == 0.1  # 0.2 only with the mean loss
    assert resolved_lr(deep, cfg.replace(rule="full")) == 0.1  # one model a step: one network's rate
    assert resolved_lr(deep, cfg.replace(spec_loss="mean")) == 0.2  # the mean asked for: its rate too
    old = cfg.replace(lr=0.1).to_dict()
    old["version"] = 5
    v5 = TrainConfig.from_dict(old)
    assert v5.spec_loss == "auto-v5"
    assert resolved_spec_loss(deep, v5) == "norm" and resolved_lr(deep, v5) == 0.1
    assert resolved_spec_loss(both, v5) == "mean"
    del old["lr"]
    assert TrainConfig.from_dict(old).lr == 0.1  # a version-5 file always had a rate: 0.1 if cut
    with pytest.raises(ConfigError, match="lr=0 is invalid; expected a positive number"):
        TrainConfig(lr=0)
    with pytest.raises(ConfigError, match="lr='fast' is invalid; expected a finite number"):
        TrainConfig(lr="fast")


def test_act_clip_auto_and_old_configs():
    """Config version 5 added act_clip; a run written before clipped at one shared level and must
    rebuild (and resume) with it whatever auto picks, or its checkpoint would not load."""
    import pytest

    import fn3
    from fn3.errors import ConfigError
    from fn3.run import AUTO_ACT_CLIP, resolved_act_clip

    bits = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("bits",))
    floats = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("channels",))
    assert resolved_act_clip(bits, TrainConfig()) == AUTO_ACT_CLIP
    assert resolved_act_clip(bits, TrainConfig(act_clip="per-bits")) == "per-bits"
    assert resolved_act_clip(floats, TrainConfig()) == "shared"  # nothing to clip
    several = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8,
                               levels=("channels", "bits"))
    assert resolved_act_clip(several, TrainConfig()) == "shared"  # measured only on bits alone
    old = TrainConfig(act_clip="per-bits").to_dict()
    old["version"] = 4
    del old["act_clip"]
    assert resolved_act_clip(bits, TrainConfig.from_dict(old)) == "shared"
    given = TrainConfig(model_kwargs={"act_clip": "shared"})  # the model option, as the repro arms give it
    assert resolved_act_clip(bits, given) == "shared"
    with pytest.raises(ConfigError, match="disagree"):
        resolved_act_clip(bits, given.replace(act_clip="per-bits"))
    with pytest.raises(ConfigError, match="act_clip='bogus' is invalid; expected auto, shared or per-bits"):
        TrainConfig(act_clip="bogus")



def test_weight_range_is_3_rms_on_bits_alone_and_a_version_11_config_keeps_the_largest_magnitude():
    """Config version 12: an unset ``weight_clip`` is 3 rms on a family nested in bits alone under
    the centred scheme, the largest magnitude (0) on any other family, on the truncating scheme and
    for a network trained alone at one sub-model (``rule="fixed"``: measured no gain there);
    a config of version 11 that left it unset reads as 0 (what its run trained on) unless the model
    option gives the range; a given range or model option wins, and the two must agree."""
    import pytest

    import fn3
    from fn3.errors import ConfigError
    from fn3.run import AUTO_WEIGHT_CLIP, resolved_weight_clip

    def net(levels, **kw):
        return fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=levels, **kw)

    bits = net(("bits",))
    assert AUTO_WEIGHT_CLIP == 3.0 and resolved_weight_clip(bits, TrainConfig()) == 3.0
    assert resolved_weight_clip(net(("bits", "channels")), TrainConfig()) == 0.0  # not measured there
    assert resolved_weight_clip(net(("bits",), quant_scheme="truncate"), TrainConfig()) == 0.0
    assert resolved_weight_clip(bits, TrainConfig(weight_clip=0)) == 0.0
    assert resolved_weight_clip(bits, TrainConfig(rule="fixed", fixed_spec="bits=2")) == 0.0
    assert resolved_weight_clip(bits, TrainConfig(rule="fixed", fixed_spec="bits=2", weight_clip=3)) == 3.0
    assert resolved_weight_clip(bits, TrainConfig(rule="odo")) == 3.0  # the paper's rule: a family too
    assert resolved_weight_clip(bits, TrainConfig(model_kwargs={"weight_clip": 2.5})) == 2.5
    with pytest.raises(ConfigError, match="disagree"):
        resolved_weight_clip(bits, TrainConfig(weight_clip=2, model_kwargs={"weight_clip": 2.5}))
    old = TrainConfig().to_dict()
    assert old["version"] == 12 and old["weight_clip"] is None
    old["version"] = 11
    assert TrainConfig.from_dict(old).weight_clip == 0.0
    assert resolved_weight_clip(bits, TrainConfig.from_dict(old)) == 0.0
    given = {**old, "model_kwargs": {"weight_clip": 2.5}}
    assert TrainConfig.from_dict(given).weight_clip is None  # the model option resolves as before
    assert resolved_weight_clip(bits, TrainConfig.from_dict(given)) == 2.5
    assert TrainConfig.from_dict({**old, "weight_clip": 1.5}).weight_clip == 1.5
