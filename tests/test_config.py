"""TrainConfig normalises what a file or a flag gives it, so equal configs compare (and hash) equal."""

from __future__ import annotations

from fn3.config import TrainConfig


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
