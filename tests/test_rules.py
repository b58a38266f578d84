"""The training rules of issue 11: auto (the default), full+odo, progressive start, delayed distillation."""

from __future__ import annotations

import pytest
import torch

import fn3
from fn3.config import TrainConfig
from fn3.data import channel_stats, load_dataset
from fn3.sampling import FullPlusODO, ListedSpecs
from fn3.train import (
    FitResult,
    evaluate_specs,
    fit,
    make_rule,
    resolved_lr,
    resolved_rule,
    resolved_spec_loss,
    step_plan,
    untrained_of,
)


def _resnet():
    return fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8,
                            levels=("channels", "layers", "bits"))


def _after_steps(net, steps: int, batch_size: int, **config) -> tuple[torch.Tensor, FitResult]:
    """``net``'s weights, flattened, after ``steps`` training steps on digits under ``config`` (and
    what ``fit`` reports): two rules that step alike leave equal weights."""
    cfg = TrainConfig(epochs=1, batch_size=batch_size, eval_specs=(), **config)
    result = fit(net, load_dataset("digits", "train"), cfg, progress=False, max_steps=steps)
    return torch.cat([p.detach().flatten() for p in net.parameters()]), result


def test_full_plus_odo_trains_the_largest_every_step_beside_tied_uniform_draws():
    space = fn3.space(_resnet())
    rule = FullPlusODO(space, draws=2, seed=4)
    widths = space.of_kind("channels")
    fractions = set()
    for step in range(60):
        specs = rule.step_specs(step)
        assert len(specs) == 3 and specs[0] == space.largest()
        assert specs == rule.step_specs(step)  # a pure function of (seed, step)
        for spec in specs[1:]:
            kept = {len(spec.kept(a.name)) for a in widths}
            assert len(kept) == 1  # tied per kind: every channel axis keeps the same fraction
            fractions |= kept
    smallest, largest = widths[0].min_blocks, widths[0].num_blocks
    assert {smallest, largest} <= fractions and len(fractions) == largest - smallest + 1  # uniform
    assert rule.step_specs(0)[1] != rule.step_specs(0)[2]  # the draws of one step differ
    with pytest.raises(fn3.ConfigError, match="draws >= 1"):
        FullPlusODO(space, draws=0)


def test_auto_rule_is_the_tied_grid_on_one_level_and_full_odo_on_several():
    one = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("channels",))
    sp = fn3.space(one)
    cfg = TrainConfig()
    assert cfg.rule == "auto" and resolved_rule(one, cfg) == "specs"
    assert resolved_spec_loss(one, cfg) == "mean"  # channels alone: the mean at twice the rate (v9)
    want = [fn3.parse_spec(f"channels={f}", sp) for f in (1.0, 0.75, 0.5, 0.25)]
    assert want[0] == sp.largest() and len(set(map(str, want))) == 4
    assert all(make_rule(one, cfg)(t) == want for t in range(5))  # the grid, every step, largest first
    two = make_rule(one, TrainConfig(grid=(0.5, 1, 0.5)))
    assert two(0) == [sp.largest(), want[2], sp.smallest()]  # largest first, each once, the smallest last
    layers = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("layers",))
    lsp = fn3.space(layers)
    stage = lsp.axes[0].name
    assert [s.size(stage, lsp) for s in make_rule(layers, cfg)(0)] == [3, 2, 1]  # 2.25, 1.5, 0.75 round
    bits = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("bits",))
    bsp = fn3.space(bits)
    assert [s.size(bsp.axes[0].name, bsp) for s in make_rule(bits, cfg)(0)] == [8, 6, 4, 2]
    paths = fn3.create_model("resnext_tiny", num_classes=10, in_channels=1, input_size=8, levels=("paths",))
    psp = fn3.space(paths)  # 8 paths a block: the grid ends at the smallest sub-model, 1 path
    assert [s.size(psp.axes[0].name, psp) for s in make_rule(paths, cfg)(0)] == [8, 6, 4, 2, 1]
    assert make_rule(paths, TrainConfig(grid=(0.5,)))(0) == [psp.largest(), psp.uniform({"paths": 0.5}),
                                                            psp.smallest()]
    # an empty grid: the tied sandwich (the default before config version 3) on the mean loss
    sand = TrainConfig(grid=())
    assert resolved_rule(one, sand) == "sandwich" and resolved_spec_loss(one, sand) == "mean"
    rule = make_rule(one, sand)
    widths = sp.of_kind("channels")
    drawn = set()
    for t in range(40):
        specs = rule(t)
        assert specs[:2] == [sp.largest(), sp.smallest()] and len(specs) == 3  # draws=1 beside them
        assert len({len(specs[2].kept(a.name)) for a in widths}) == 1  # tied per kind
        drawn.add(len(specs[2].kept(widths[0].name)))
    assert len(drawn) > 2  # uniform draws, not only the corners
    assert len(make_rule(one, TrainConfig(grid=(), draws=2))(0)) == 4
    several = _resnet()
    assert resolved_rule(several, cfg) == "full+odo" and resolved_spec_loss(several, cfg) == "mean"
    full_odo = FullPlusODO(fn3.space(several), 1, "uniform", 0.9, 0, "kind")
    assert all(make_rule(several, cfg)(t) == full_odo.step_specs(t) for t in range(10))
    assert resolved_rule(several, TrainConfig(rule="sandwich")) == "sandwich"  # explicit rules stay
    assert resolved_rule(several, TrainConfig(rule="specs")) == "specs"  # on the grid, tied over kinds
    with pytest.raises(fn3.ConfigError, match=r"grid=.*kept fractions in \(0, 1\]"):
        TrainConfig(grid=(1.0, 0.0))


def test_a_family_nested_in_paths_alone_trains_on_the_per_weight_mean():
    """Config version 8: ``spec_loss="auto"`` is ``shared`` for a family nested in paths alone (measured
    best there at 18 and 36 epochs), and a training step with it moves the weights exactly as
    ``--spec-loss shared`` does, not as ``norm`` does; a version 6-7 run resumes on ``norm``."""
    from fn3.config import CONFIG_VERSION

    def paths_net():
        torch.manual_seed(0)
        return fn3.create_model("resnext_tiny", num_classes=10, in_channels=1, input_size=8,
                                levels=("paths",), widths=[8, 16, 16], group_widths=[1, 1, 1])

    def after_steps(spec_loss: str) -> torch.Tensor:
        weights, result = _after_steps(paths_net(), 2, 32, model="resnext_tiny", spec_loss=spec_loss)
        assert result.spec_loss == ("shared" if spec_loss == "auto" else spec_loss)
        return weights

    auto, shared, norm = (after_steps(loss) for loss in ("auto", "shared", "norm"))
    assert torch.equal(auto, shared)
    assert not torch.allclose(auto, norm)  # the two losses step differently: the test can tell them apart
    paths = paths_net()
    cfg = TrainConfig()
    assert resolved_spec_loss(paths, cfg) == "shared" and resolved_rule(paths, cfg) == "specs"
    both = fn3.create_model("resnext_tiny", num_classes=10, in_channels=1, input_size=8,
                            levels=("paths", "channels"))
    assert resolved_spec_loss(both, cfg) == "mean"  # several levels: full+odo draws, as before
    old = {**cfg.to_dict(), "version": 7}
    assert cfg.to_dict()["version"] == CONFIG_VERSION
    v7 = TrainConfig.from_dict(old)
    assert v7.spec_loss == "auto-v7" and TrainConfig.from_dict(v7.to_dict()) == v7
    deep = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("layers",))
    wide = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("channels",))
    assert [resolved_spec_loss(m, v7) for m in (paths, deep, wide)] == ["norm", "mean", "norm"]
    assert TrainConfig.from_dict({**old, "spec_loss": "sum"}).spec_loss == "sum"  # a given loss stays


def test_a_family_nested_in_channels_alone_trains_on_the_mean_at_twice_the_rate():
    """Config version 9: ``spec_loss="auto"`` with ``lr`` unset is ``mean`` at 0.2 for a family nested in
    channels alone (its full model's held-out lag under ``norm``), and a training step with it moves the
    weights exactly as ``--spec-loss mean --lr 0.2`` does, not as ``norm`` at 0.1 (version 8's) does; a
    version-8 run resumes on ``norm`` at 0.1, and an explicit ``norm`` keeps 0.1."""
    from fn3.config import CONFIG_VERSION

    def wide_net():
        torch.manual_seed(0)
        return fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("channels",))

    def after_steps(**overrides) -> tuple[torch.Tensor, str]:
        weights, result = _after_steps(wide_net(), 2, 32, model="resnet20", **overrides)
        return weights, result.spec_loss

    (auto, loss), (mean, _), (norm, _) = (after_steps(**o) for o in (
        {}, {"spec_loss": "mean", "lr": 0.2}, {"spec_loss": "norm", "lr": 0.1}))
    assert loss == "mean" and torch.equal(auto, mean)
    assert not torch.allclose(auto, norm)  # the two rules step differently: the test can tell them apart
    wide, cfg = wide_net(), TrainConfig()
    assert (resolved_spec_loss(wide, cfg), resolved_lr(wide, cfg)) == ("mean", 0.2)
    norm_cfg = TrainConfig(spec_loss="norm")
    assert (resolved_spec_loss(wide, norm_cfg), resolved_lr(wide, norm_cfg)) == ("norm", 0.1)
    old = {**cfg.to_dict(), "version": 8}
    assert cfg.to_dict()["version"] == CONFIG_VERSION >= 9
    v8 = TrainConfig.from_dict(old)
    assert v8.spec_loss == "auto-v8" and TrainConfig.from_dict(v8.to_dict()) == v8
    assert (resolved_spec_loss(wide, v8), resolved_lr(wide, v8)) == ("norm", 0.1)
    paths = fn3.create_model("resnext_tiny", num_classes=10, in_channels=1, input_size=8, levels=("paths",))
    deep = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("layers",))
    bits = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("bits",))
    # version 8 trained the other families as version 9 does
    assert [resolved_spec_loss(m, v8) for m in (paths, deep, bits)] == ["shared", "mean", "norm"]
    assert [resolved_spec_loss(m, cfg) for m in (paths, deep, bits)] == ["shared", "mean", "norm"]
    assert resolved_lr(bits, cfg) == 0.1  # twice the rate cost 12 pt on bits: not there
    # an explicit mean with the rate unset: twice the rate on channels since version 9, and a version-8
    # run of it resumes at the 0.1 it started at (depth kept 0.2 in both)
    mean = TrainConfig(spec_loss="mean")
    assert [resolved_lr(m, mean) for m in (wide, deep)] == [0.2, 0.2]
    mean_v8 = TrainConfig.from_dict({**mean.to_dict(), "version": 8})
    assert mean_v8.spec_loss == "mean-v8" and TrainConfig.from_dict(mean_v8.to_dict()) == mean_v8
    assert [(resolved_spec_loss(m, mean_v8), resolved_lr(m, mean_v8)) for m in (wide, deep)] == [
        ("mean", 0.1), ("mean", 0.2)]
    assert TrainConfig.from_dict({**mean.to_dict(), "version": 8, "lr": 0.3}).spec_loss == "mean"


def test_a_config_written_before_the_grid_keeps_training_the_tied_sandwich():
    """A run directory of config version 2 resumes with the rule it started with."""
    old = {**TrainConfig().to_dict(), "version": 2}
    del old["grid"]
    old["spec_loss"] = "mean"
    cfg = TrainConfig.from_dict(old)
    assert cfg.grid == () and cfg.spec_loss == "mean"
    one = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("channels",))
    assert resolved_rule(one, cfg) == "sandwich"
    assert TrainConfig.from_dict(TrainConfig().to_dict()).grid == (1.0, 0.75, 0.5, 0.25)


def test_specs_rule_trains_the_largest_and_every_listed_spec_each_step():
    model = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8,
                             levels=("channels", "bits"))
    sp = fn3.space(model)
    cfg = TrainConfig(rule="specs", train_specs=("channels=0.5", "channels=0.25,bits=2", "largest",
                                               "channels=0.5"))
    want = [sp.largest(), fn3.parse_spec("channels=0.5", sp), fn3.parse_spec("channels=0.25,bits=2", sp)]
    rule = make_rule(model, cfg)
    assert all(rule(t) == want for t in range(20))  # every budget, every step, largest first, once each
    recorded = ListedSpecs(sp, want[1:]).to_dict()
    assert recorded["rule"] == "specs" and [fn3.Spec.from_dict(d, sp) for d in recorded["specs"]] == want
    assert cfg.to_dict()["train_specs"] == ["channels=0.5", "channels=0.25,bits=2", "largest", "channels=0.5"]
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # the run directory's config round-trips
    with pytest.raises(fn3.ConfigError, match="rule=specs needs the sub-models"):
        TrainConfig(rule="specs", grid=())
    with pytest.raises(fn3.SpecError, match="--train-spec layers=0.5: .*does not nest layers"):
        make_rule(model, TrainConfig(rule="specs", train_specs=("layers=0.5",)))
    with pytest.raises(fn3.ConfigError, match="train_specs=.* a list of specs"):
        TrainConfig(train_specs=[1, 2])
    # auto trains the listed specs; a rule that draws its own specs refuses them (it would ignore them)
    listed = TrainConfig(train_specs=cfg.train_specs)
    assert resolved_rule(model, listed) == "specs"
    assert all(make_rule(model, listed)(t) == want for t in (0, 9))
    with pytest.raises(fn3.ConfigError, match="train_specs are trained by rule=specs .*not rule=odo"):
        TrainConfig(rule="odo", train_specs=("channels=0.5",))


def test_rule_defaults_depend_on_the_rule():
    assert TrainConfig().sampler == ("uniform", "kind")
    assert TrainConfig(rule="odo").sampler == ("geometric", "none")  # the paper, as it was
    assert TrainConfig(rule="odo", tie="kind").sampler == ("geometric", "kind")
    model = _resnet()
    odo = make_rule(model, TrainConfig(rule="odo"))
    paper = fn3.OrderedDropout(fn3.space(model), "geometric", 0.9, 0, "none")
    assert all(odo(t) == paper.step_specs(t) for t in range(10))
    default = make_rule(model, TrainConfig())
    assert all(default(t)[0] == fn3.space(model).largest() for t in range(10))


def test_step_plan_full_first_then_nested_and_late_distillation():
    model = _resnet()
    largest = fn3.space(model).largest()
    cfg = TrainConfig(full_first=0.3, distill=True, distill_start=0.5)
    rule = make_rule(model, cfg)
    plans = [step_plan(cfg, rule, largest, t, 10) for t in range(10)]
    assert [len(s) for s, _ in plans] == [1, 1, 1] + [2] * 7
    assert all(s == [largest] for s, _ in plans[:3])
    assert [d for _, d in plans] == [False] * 5 + [True] * 5
    plain = TrainConfig()
    assert not any(step_plan(plain, rule, largest, t, 10)[1] for t in range(10))


def test_default_rule_trains_every_width_on_real_digits():
    """The default trains a family whose smallest member works: a rule that never trained the small
    widths (or the full model) would fail one of the two bars."""
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    mean, std = channel_stats(train)
    # lr 0.2: the default steps on the mean of its two losses, so it takes the learning rate that
    # suits one network (the summed rule at lr 0.1 took the same step on the shared weights)
    cfg = TrainConfig(model="mlp", epochs=6, batch_size=64, lr=0.2, mean=mean, std=std,
                      model_kwargs={"hidden": [128, 128]}, eval_specs=())
    model = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8, hidden=(128, 128))
    torch.manual_seed(0)
    assert fit(model, train, cfg, progress=False).rule == "full+odo"  # auto, on neurons and bits
    space = fn3.space(model)
    specs = {"full": space.largest(), "quarter": space.uniform({"neurons": 0.25}),
             "2 bits": space.uniform({"bits": 2})}
    acc = evaluate_specs(model, specs, test, cfg, train)
    # measured: 98.9 / 97.2 / 98.6 (the paper's odo: 96.4 / 96.1 / 96.1)
    assert acc["full"] > 0.97
    assert acc["quarter"] > 0.95
    assert acc["2 bits"] > 0.97


def test_specs_per_step_trains_the_largest_and_the_others_in_turn():
    bits = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("bits",))
    sp = fn3.space(bits)
    grid = make_rule(bits, TrainConfig())(0)  # 8, 6, 4, 2 bits
    rule = make_rule(bits, TrainConfig(specs_per_step=2))
    steps = [rule(t) for t in range(6)]
    assert all(len(s) == 2 and s[0] == sp.largest() for s in steps)
    assert [s[1] for s in steps] == grid[1:] * 2  # round the list: each member once in any 3 steps
    assert make_rule(bits, TrainConfig(specs_per_step=3))(1) == [grid[0], grid[3], grid[1]]
    assert make_rule(bits, TrainConfig(specs_per_step=9))(5) == grid  # more than there are: all
    assert ListedSpecs(sp, grid[1:], per_step=2).to_dict()["per_step"] == 2
    with pytest.raises(fn3.ConfigError, match="specs_per_step=1 is invalid; expected 0 .* or a whole"):
        TrainConfig(specs_per_step=1)
    with pytest.raises(fn3.ConfigError, match="specs_per_step applies to rule=specs .*not rule=odo"):
        TrainConfig(rule="odo", specs_per_step=2)
    with pytest.raises(fn3.ConfigError, match="this model trains with full\\+odo: drop --specs-per-step"):
        make_rule(_resnet(), TrainConfig(specs_per_step=2))
    assert TrainConfig.from_dict(TrainConfig(specs_per_step=2).to_dict()).specs_per_step == 2


def test_specs_rotation_smallest_trains_the_smallest_every_other_step():
    """``specs_rotation="smallest"``: 2 bits on every even step, 6 and 4 bits in turn in the other
    slots; with three specs a step the smallest still takes one step in two and nothing repeats."""
    bits = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("bits",))
    sp = fn3.space(bits)
    b8, b6, b4, b2 = make_rule(bits, TrainConfig())(0)
    rule = make_rule(bits, TrainConfig(specs_per_step=2, specs_rotation="smallest"))
    assert [rule(t) for t in range(6)] == [[b8, b2], [b8, b6], [b8, b2], [b8, b4], [b8, b2], [b8, b6]]
    three = make_rule(bits, TrainConfig(specs_per_step=3, specs_rotation="smallest"))
    steps = [three(t) for t in range(8)]
    assert [b2 in s for s in steps] == [True, False] * 4
    assert all(len(set(map(repr, s))) == 3 and s[0] == b8 for s in steps)
    assert sum(b6 in s for s in steps) == sum(b4 in s for s in steps) == 6  # the other slots shared evenly
    # the smallest is found by its kept units, wherever the list puts it
    assert ListedSpecs(sp, [b2, b6, b4], 2, "smallest").step_specs(0) == [b8, b2]
    assert ListedSpecs(sp, [b2, b6, b4], 2, "smallest").to_dict()["rotation"] == "smallest"
    expected = "specs_rotation=.often. is invalid; expected auto, even, smallest, corners or ends"
    with pytest.raises(fn3.ConfigError, match=expected):
        TrainConfig(specs_per_step=2, specs_rotation="often")
    with pytest.raises(fn3.ConfigError, match="specs_rotation=smallest shares the slots of --specs-per-step"):
        TrainConfig(specs_rotation="smallest")
    cfg = TrainConfig(specs_per_step=2, specs_rotation="smallest")
    assert TrainConfig.from_dict(cfg.to_dict()).specs_rotation == "smallest"


def test_specs_rotation_corners_trains_the_largest_and_smallest_every_step_the_others_every_other():
    """``specs_rotation="corners"``: 8 and 2 bits every step, 6 and 4 bits in turn on odd steps (2.5
    passes a step at three specs); four specs fill both middle slots; fewer than three is refused."""
    bits = fn3.create_model("resnet20", num_classes=10, in_channels=1, input_size=8, levels=("bits",))
    sp = fn3.space(bits)
    b8, b6, b4, b2 = make_rule(bits, TrainConfig())(0)
    rule = make_rule(bits, TrainConfig(specs_per_step=3, specs_rotation="corners"))
    assert [rule(t) for t in range(6)] == [[b8, b2], [b8, b2, b6], [b8, b2], [b8, b2, b4], [b8, b2],
                                           [b8, b2, b6]]
    b3 = fn3.parse_spec("bits=3", sp)
    four = ListedSpecs(sp, [b6, b4, b3, b2], 4, "corners")  # two middle slots on odd steps
    assert [four.step_specs(t) for t in range(4)] == [[b8, b2], [b8, b2, b6, b4], [b8, b2], [b8, b2, b3, b6]]
    with pytest.raises(fn3.ConfigError, match="rotation corners with 2 specs per step leaves no slot"):
        ListedSpecs(sp, [b6, b4, b2], 2, "corners")
    with pytest.raises(fn3.ConfigError, match="--specs-per-step 2 leaves none: use --specs-per-step 3"):
        TrainConfig(specs_per_step=2, specs_rotation="corners")
    cfg = TrainConfig(specs_per_step=3, specs_rotation="corners")
    assert TrainConfig.from_dict(cfg.to_dict()).specs_rotation == "corners"


def test_specs_rotation_ends_trains_the_corners_every_step_and_every_middle_member_in_turn():
    """``specs_rotation="ends"``: on the five depths of ResNet-32's 5-block stages with four specs a
    step, 5 and 1 blocks every step and two of 4/3/2 blocks in turn, each on two steps of three: as
    many blocks a step as the default grid's 5/4/2/1 (12 of 15 a stage), and no depth left out."""
    model = fn3.create_model("resnet32", num_classes=10, in_channels=1, input_size=8, levels=("layers",))
    sp = fn3.space(model)
    specs = [fn3.parse_spec(f"layers={f}", sp) for f in (1.0, 0.8, 0.6, 0.4, 0.2)]
    rule = make_rule(model, TrainConfig(rule="specs", train_specs=tuple(f"layers={f}" for f in
                                                                        (0.8, 0.6, 0.4, 0.2)),
                                        specs_per_step=4, specs_rotation="ends"))
    steps = [rule(t) for t in range(6)]
    assert all(s[:2] == [specs[0], specs[4]] and len(s) == 4 and len(set(map(repr, s))) == 4 for s in steps)
    assert [sum(specs[i] in s for s in steps) for i in (1, 2, 3)] == [4, 4, 4]  # 2 of every 3 steps
    # blocks trained per step, summed over the three stages: the grid 5/4/2/1 trains 3 * 12 = 36
    blocks = [sum(len(kept) for s in step for _, kept in s) for step in steps]
    assert sum(blocks) / len(blocks) == 36
    with pytest.raises(fn3.ConfigError, match="rotation ends with 2 specs per step leaves no slot"):
        ListedSpecs(sp, specs[1:], 2, "ends")
    with pytest.raises(fn3.ConfigError, match="specs_rotation=ends trains the largest and the smallest"):
        TrainConfig(specs_per_step=2, specs_rotation="ends")
    with pytest.raises(fn3.ConfigError, match="which is 0 .every member every step.: add --specs-per-step 3"):
        TrainConfig(specs_rotation="ends")
    cfg = TrainConfig(specs_per_step=4, specs_rotation="ends")
    assert TrainConfig.from_dict(cfg.to_dict()).specs_rotation == "ends"


def test_the_default_rotation_trains_every_depth_of_a_5_block_stage_below_the_grids_cost():
    """Config version 11: ``specs_rotation="auto"`` (the default) on a family nested in depth alone whose
    grid leaves depths out (ResNet-32: 5/4/2/1 blocks, never 3) lists every depth and trains 3 a step in
    the ends rotation at lr 0.15: a training step moves the weights exactly as the explicit flags do,
    not as the grid does, nor as version 10's 4 a step at 0.2, which a version-10 config still trains
    (``auto-v10``); everywhere else (3-block stages, channels, listed specs, a given --specs-per-step)
    it is the even rotation; a version-9 config, whose default was even, resumes on the grid."""
    def deep_net(depth: int = 32, levels: tuple[str, ...] = ("layers",)):
        torch.manual_seed(0)
        return fn3.create_model(f"resnet{depth}", num_classes=10, in_channels=1, input_size=8, levels=levels)

    def after_steps(**overrides) -> tuple[torch.Tensor, FitResult]:
        return _after_steps(deep_net(), 3, 16, model="resnet32", **overrides)

    every = {"grid": (1.0, 0.8, 0.6, 0.4, 0.2), "specs_rotation": "ends"}
    v10 = TrainConfig(model="resnet32").to_dict() | {"version": 10}
    v10_cfg = TrainConfig.from_dict(v10)
    assert v10_cfg.specs_rotation == "auto-v10" and TrainConfig.from_dict(v10_cfg.to_dict()) == v10_cfg
    (auto, said), (ends, _), (grid, _), (old, old_said), (old_ends, _) = (after_steps(**o) for o in (
        {}, {**every, "specs_per_step": 3, "lr": 0.15}, {"specs_rotation": "even"},
        {"specs_rotation": "auto-v10"}, {**every, "specs_per_step": 4, "lr": 0.2}))
    assert said.per_step == "3 of 5 specs a step, rotation ends" and said.lr == 0.15
    assert old_said.per_step == "4 of 5 specs a step, rotation ends" and old_said.lr == 0.2
    assert torch.equal(auto, ends) and torch.equal(old, old_ends)
    # the test can tell them apart: the grid and version 10's rule step differently
    assert not torch.allclose(auto, grid) and not torch.allclose(auto, old)
    deep = deep_net()
    sp = fn3.space(deep)
    depths = [[len(s.kept("stage2.depth")) for s in make_rule(deep, TrainConfig())(t)] for t in range(3)]
    assert all(d[:2] == [5, 1] and len(d) == 3 for d in depths)  # the ends every step, 3 specs a step
    assert sorted(d[2] for d in depths) == [2, 3, 4]  # 4/3/2 once in three steps
    assert untrained_of(deep, TrainConfig())[0] == {}
    assert untrained_of(deep, TrainConfig(specs_rotation="even"))[0] == {n: [3] for n in sp.names}

    def members(model, **overrides) -> list[list[int]]:
        rule = make_rule(model, TrainConfig(**overrides))
        return [[sum(len(kept) for _, kept in s) for s in rule(t)] for t in range(2)]

    for model, overrides in ((deep_net(20), {}), (deep_net(20, ("channels",)), {}),
                             (deep, {"specs_per_step": 2}), (deep, {"train_specs": ("layers=0.6",)})):
        assert members(model, **overrides) == members(model, specs_rotation="even", **overrides)
        assert resolved_lr(model, TrainConfig(**overrides)) == resolved_lr(
            model, TrainConfig(specs_rotation="even", **overrides))
    assert members(deep, specs_per_step=2) == [[15, 12], [15, 6]]  # the grid's members in turn: 3 never
    v9 = {k: v for k, v in TrainConfig().to_dict().items() if k != "specs_rotation"} | {"version": 9}
    assert TrainConfig.from_dict(v9).specs_rotation == "even"
    assert TrainConfig.from_dict(TrainConfig().to_dict()).specs_rotation == "auto"


def test_specs_per_step_updates_only_the_members_of_the_step():
    """Nested in bits with a clipping level per bit-width, a training step moves the level of each
    bit-width it trains and no other: with two specs a step, step 0 trains 8 and 6 bits, step 1 8 and
    4, so after one step the 4- and 2-bit levels are untouched; with the whole grid all of them move."""
    train = load_dataset("digits", "train")

    def levels_after(steps: int, per_step: int, rotation: str = "even") -> torch.Tensor:
        torch.manual_seed(0)
        model = fn3.create_model("mlp", num_classes=10, in_channels=1, input_size=8,
                                 levels=("bits",), quant_scheme="centred", act_clip="per-bits")
        quant = next(m for m in model.modules() if hasattr(m, "alpha_bits"))
        before = quant.alpha_bits.detach().clone()
        cfg = TrainConfig(model="mlp", epochs=1, batch_size=32, specs_per_step=per_step, eval_specs=(),
                          act_clip="per-bits", specs_rotation=rotation)
        fit(model, train, cfg, progress=False, max_steps=steps)
        return (quant.alpha_bits.detach() != before)[[5, 3, 1]]  # levels of c = 6, 4, 2 bits

    assert levels_after(1, 2).tolist() == [True, False, False]
    assert levels_after(2, 2).tolist() == [True, True, False]
    assert levels_after(1, 0).tolist() == [True, True, True]
    assert levels_after(1, 2, "smallest").tolist() == [False, False, True]  # step 0: 8 and 2 bits
    assert levels_after(2, 2, "smallest").tolist() == [True, False, True]
