"""The reproduction page's comparisons (benchmarks/repro/targets.py) when arms were evaluated with
different BatchNorm protocols: two arms are compared only over the protocols both have."""

from __future__ import annotations

import sys
from pathlib import Path

REPRO = Path(__file__).resolve().parents[2] / "benchmarks" / "repro"
if str(REPRO) not in sys.path:
    sys.path.insert(0, str(REPRO))

import targets  # noqa: E402


def _arm(**modes: dict[str, float]) -> dict:
    return {"accuracy": modes, "cpu_time_s": 100.0, "wall_time_s": 100.0}


OLD = _arm(plain={"8 bits": 0.30, "2 bits": 0.20}, bn_recal={"8 bits": 0.50, "2 bits": 0.40})
NEW = _arm(plain={"8 bits": 0.30, "2 bits": 0.20}, bn_recal={"8 bits": 0.47, "2 bits": 0.41},
           bn_aug={"8 bits": 0.55, "2 bits": 0.53})


def test_two_arms_are_compared_over_the_protocols_both_have():
    mine, theirs = targets.best_pair(NEW, OLD)
    assert mine == {"8 bits": 0.47, "2 bits": 0.41}  # NEW's bn_aug is not held against OLD
    assert theirs == {"8 bits": 0.50, "2 bits": 0.40}
    mine, theirs = targets.best_pair(NEW, NEW)
    assert mine == theirs == {"8 bits": 0.55, "2 bits": 0.53}


def test_one_arm_reads_its_best_protocol_and_the_page_one_all_arms_share():
    assert targets.arm_mode(NEW) == "bn_aug" and targets.arm_mode(OLD) == "bn_recal"
    assert targets.arm_mode(NEW, OLD) == "bn_recal"
    assert targets.arm_mode(_arm(plain={"x": 0.1})) == "plain"
    assert targets.main_mode({"arms": {"a": NEW, "b": OLD}}) == "bn_recal"
    assert targets.main_mode({"arms": {"a": NEW, "b": NEW}}) == "bn_aug"
    assert targets.main_mode({"arms": {"a": _arm(plain={"x": 0.1})}}) == "plain"


def _res(level: str, **arms: dict) -> dict:
    return {"experiment": "exp5_bits", "level": level, "settings": {"test_images": 2000},
            "budgets": [{"label": "8 bits"}, {"label": "2 bits"}], "arms": arms}


def test_parity_rows_use_the_common_protocol_and_the_default_of_the_family():
    one = _res("bits", **{"fn3 auto grid, norm-matched sum": NEW,
                          "fn3 auto (tied grid 100/75/50/25%, per-weight mean)": OLD,
                          "fn3 sandwich, tied, mean loss": OLD, "fn3 default (full+odo, mean loss)": OLD,
                          "independent (one per bit-width)": OLD})
    rows = [r for r in targets.target_rows(one) if "independent twin" in r[1]]
    default = next(r for r in rows if "[fn3's default" in r[1])
    assert default[1].startswith("every fn3 auto grid, norm")  # one level: the grid (config v4)
    assert "worst gap -3.00 pt (8 bits" in default[2] and "missed" in default[3]  # 0.47 vs 0.50
    assert any(r[1].startswith("every fn3 default (full+odo") and "(candidate)" in r[1] for r in rows)
    assert any(r[1].startswith("every fn3 sandwich, tied, mean") and "(candidate)" in r[1] for r in rows)
    assert any(r[1].startswith("every fn3 auto (tied grid") and "(candidate)" in r[1] for r in rows)
    drop = next(r for r in targets.target_rows(one) if r[1].startswith("2-bit fn3 auto grid"))
    assert "drop 2.00 pt" in drop[2]  # within the arm: its own bn_aug, 55 -> 53
    several = _res("bits,channels", **{"fn3 sandwich, tied, mean loss": NEW,
                                        "fn3 default (full+odo, mean loss)": OLD,
                                        "independent (one per bit-width)": OLD})
    rows = [r for r in targets.target_rows(several) if "[fn3's default" in r[1]]
    assert rows and all("fn3 default (full+odo" in r[1] for r in rows)  # several levels: full+odo


def test_an_arm_run_twice_costs_its_smallest_cpu_time():
    arm = {**NEW, "cpu_time_s": 1208.0, "earlier_runs": [{"cpu_time_s": 724.0}, {"cpu_time_s": 0.0}]}
    assert targets.train_time(arm) == 724.0  # the busier run only added time
    assert targets.train_time(NEW) == 100.0
    assert targets.train_time({"accuracy": {}, "wall_time_s": 5.0}) == 5.0  # no CPU time recorded


def test_the_family_cost_verdict_reads_the_interleaved_step_ratio_where_measured():
    """benchmarks/family_cost.py's ratio (res["_step_cost"]) decides the cost target; without it the
    runs' CPU times do (here equal: 1.00x)."""
    auto = "fn3 auto grid, norm-matched sum"
    one = _res("bits", **{auto: NEW, "independent (one per bit-width)": OLD})

    def cost_row(res: dict) -> tuple[str, str, str, str]:
        return next(r for r in targets.target_rows(res) if "half the CPU time" in r[1])

    # made apart, the runs' times still give a verdict, marked as such
    assert cost_row(one)[3] == "**missed**: 1.00x, not <= 0.50x (runs made apart: not timed interleaved)"
    row = cost_row({**one, "_step_cost": {auto: 0.42}})
    assert row[3] == "**met**" and row[2].startswith("0.42x per step, interleaved")
    assert "100 s vs 100 s (1.00x)" in row[2]  # the runs' own times stay beside it


def test_the_held_out_images_add_a_row_with_the_defaults_gaps_and_their_noise():
    """benchmarks/repro/heldout.py's paired gaps (res["_heldout"]) give the default one more row: the
    worst budget's gap, the full model's and the 2-bit drop, each judged against its own target."""
    one = _res("bits", **{"fn3 auto grid, norm-matched sum": NEW, "independent (one per bit-width)": OLD})

    def held_rows(res: dict) -> list[tuple[str, str, str, str]]:
        return [r for r in targets.target_rows(res) if "this page does not use" in r[1]]

    assert held_rows(one) == []  # no held-out measurement: no row
    gaps = {"8 bits": {"norm_minus_independent": {"heldout": -0.005, "se": 0.004}},
            "2 bits": {"norm_minus_independent": {"heldout": -0.025, "se": 0.005}}}
    held = {"heldout_images": 8000, "budgets": gaps, "norm_bit_drop": {"heldout": 0.02, "se": 0.003}}
    (row,) = held_rows({**one, "_heldout": held})
    assert "8,000 test images" in row[1] and "[fn3's default" in row[1]
    assert row[2] == ("worst gap -2.50 pt (2 bits; 2 s.e. 1.00), full model -0.50 pt (2 s.e. 0.80); "
                      "8 bits - 2 bits 2.00 pt (2 s.e. 0.60)")
    assert row[3] == "held-out: missed (2 pt), met (full, 1 pt), met (2-bit drop, 3 pt)"


def test_an_arm_named_after_the_default_is_a_candidate_with_its_2_bit_drop_and_cost():
    """The default at two specs a step shares the default's name as a prefix: it still gets the
    candidate rows (parity, cost against the 0.5x target, its own 2-bit drop), the default its own."""
    clip = targets.CLIP_ARM
    cheap = {**_arm(bn_aug={"8 bits": 0.55, "2 bits": 0.50}), "cpu_time_s": 40.0}
    res = _res("bits", **{clip: NEW, clip + ", 2 specs a step": cheap,
                          "independent (one per bit-width)": NEW})
    rows = targets.target_rows(res)
    mine = [r for r in rows if r[1].startswith(f"every {clip}, 2 specs") or f"{clip}, 2 specs" in r[1]]
    assert any("(candidate)" in r[1] and "worst gap -3.00 pt" in r[2] for r in mine)
    cost = next(r for r in mine if "family CPU time" in r[1])
    # the runs' CPU times alone (made apart) are no reading of the target; the interleaved ratio is
    assert "40 s vs 100 s (0.40x)" in cost[2] and "not timed interleaved" in cost[3]
    timed = {**res, "_step_cost": {clip + ", 2 specs a step": 0.45}}
    cost = next(r for r in targets.target_rows(timed) if "2 specs a step: family CPU time" in r[1])
    assert "0.45x per step, interleaved" in cost[2] and cost[3] == "info (within the 0.50x target)"
    drop = next(r for r in mine if r[1].startswith("2-bit"))
    assert "drop 5.00 pt" in drop[2] and "missed** by 2.00" in drop[3] and "(candidate)" in drop[1]
    default = [r for r in rows if "[fn3's default" in r[1]]
    assert any("drop 2.00 pt" in r[2] for r in default)  # the default's own arm, not the cheap one


def test_every_arm_sharing_a_candidate_prefix_gets_its_rows():
    """Two specs a step, its smallest rotation and three specs a step all start with the default's
    name (and so with two candidate prefixes): each gets its own 2-bit drop row, not only the first
    arm of each prefix."""
    clip = targets.CLIP_ARM
    two = _arm(bn_aug={"8 bits": 0.55, "2 bits": 0.50})
    small = _arm(bn_aug={"8 bits": 0.54, "2 bits": 0.50})
    three = _arm(bn_aug={"8 bits": 0.56, "2 bits": 0.53})
    res = _res("bits", **{clip: NEW, clip + ", 2 specs a step": two, clip + ", 2 specs, smallest": small,
                          clip + ", 3 specs a step": three, "independent (one per bit-width)": NEW})
    drops = {r[1]: r[2] for r in targets.target_rows(res) if r[1].startswith("2-bit")}
    assert any("2 specs a step" in k and "drop 5.00 pt" in v for k, v in drops.items())
    assert any("smallest" in k and "drop 4.00 pt" in v for k, v in drops.items())
    assert any("3 specs a step" in k and "drop 3.00 pt" in v for k, v in drops.items())


def _random_order(two_bits: float, draws: list[float]) -> dict:
    """A random-order ablation arm: its 2-bit accuracy (the mean of ``draws``) and the draws."""
    return {"kind": "random-order", "accuracy": {"bn_aug": {"8 bits": 0.52, "2 bits": two_bits}},
            "draws": {"bn_aug": {"2 bits": draws}}}


def _default_rows(res: dict) -> tuple[list, list]:
    """Every target row of ``res``, and those marked as fn3's default's."""
    rows = targets.target_rows(res)
    return rows, [r for r in rows if "[fn3's default" in r[1]]


def test_a_depth_family_is_held_to_the_targets_by_the_mean_at_lr_0_2_where_it_ran():
    """Config version 6 trains a family nested in depth alone on the mean loss at lr 0.2: that arm gets
    the default's rows (with its own random-order ablation), the norm-matched grid becomes a candidate;
    a page that never ran it keeps the grid as the default."""
    deep = _arm(bn_aug={"8 bits": 0.52, "2 bits": 0.49})
    shallow = _arm(bn_aug={"8 bits": 0.52, "2 bits": 0.40})
    rnd = _random_order(0.32, [0.30, 0.34])
    res = _res("layers", **{targets.NORM_ARM: shallow, targets.DEPTH_ARM: deep,
                            targets.DEPTH_RANDOM_ORDER + " removal": rnd,
                            "independent (one per depth)": NEW})
    rows, default = _default_rows(res)
    assert default and all(targets.DEPTH_ARM in r[1] for r in default)
    parity = next(r for r in default if "independent twin" in r[1])
    assert "worst gap -4.00 pt (2 bits" in parity[2]  # 0.49 vs 0.53: the depth arm's, not the grid's
    tail = next(r for r in default if "random-order" in r[1])
    assert "worst +17.00 pt (2 bits" in tail[2]  # 0.49 against the draws' mean 0.32
    assert any(r[1].startswith(f"every {targets.NORM_ARM}") and "(candidate)" in r[1] for r in rows)
    del res["arms"][targets.DEPTH_ARM]
    assert all(targets.NORM_ARM in r[1] for r in targets.target_rows(res) if "[fn3's default" in r[1])


def test_a_paths_family_is_held_to_the_targets_by_the_per_weight_mean_and_its_held_out_gaps():
    """Config version 8 trains a family nested in paths alone on the per-weight mean: that arm gets the
    default's rows, its held-out row reads heldout.py's ``shared`` gaps (not ``norm``'s), and the
    norm-matched grid becomes a candidate; a page that never ran it keeps the grid as the default."""
    shared = _arm(bn_aug={"8 bits": 0.52, "2 bits": 0.50})
    norm = _arm(bn_aug={"8 bits": 0.49, "2 bits": 0.50})
    rnd = _random_order(0.30, [0.29, 0.31])
    res = _res("paths", **{targets.NORM_ARM: norm, targets.PATHS_ARM: shared,
                           targets.PATHS_RANDOM_ORDER + " removal": rnd,
                           "independent (one per path count)": NEW})
    res["experiment"] = "exp4_paths"
    gap = {"8 bits": {"shared_minus_independent": {"heldout": -0.012, "se": 0.005},
                      "norm_minus_independent": {"heldout": -0.031, "se": 0.005}}}
    res["_heldout"] = {"heldout_images": 8000, "budgets": gap}
    rows, default = _default_rows(res)
    assert default and all(targets.PATHS_ARM in r[1] for r in default)
    parity = next(r for r in default if "independent twin" in r[1])
    assert "worst gap -3.00 pt (2 bits" in parity[2]  # 0.50 vs 0.53: the per-weight mean's
    held = next(r for r in default if "8,000 test images" in r[1])
    assert "worst gap -1.20 pt" in held[2] and held[3].startswith("held-out: met (2 pt), missed (full")
    tail = next(r for r in default if "random-order" in r[1])
    assert "worst +20.00 pt (2 bits" in tail[2]
    assert any(r[1].startswith(f"every {targets.NORM_ARM}") and "(candidate)" in r[1] for r in rows)
    del res["arms"][targets.PATHS_ARM]
    default = _default_rows(res)[1]
    assert default and all(targets.NORM_ARM in r[1] for r in default)
    assert "worst gap -3.10 pt" in next(r for r in default if "8,000 test images" in r[1])[2]


def test_the_default_is_read_at_every_seed_with_its_own_arm_twins_and_held_out_gaps():
    """default_seed_rows: one row per seed that ran the family's default beside its twins, each gap at
    that seed's own twins and protocol, the held-out reading from that seed's heldout.py gaps of the
    default's loss; a seed without twins or without the default gives no row."""
    page = _res("paths", **{targets.PATHS_ARM: _arm(bn_aug={"8 bits": 0.52, "2 bits": 0.50}),
                            targets.NORM_ARM: _arm(bn_aug={"8 bits": 0.60, "2 bits": 0.60}),
                            "independent (one per path count)": NEW})
    page["settings"]["train"] = {"seed": 0}
    one = _res("paths", **{targets.PATHS_ARM: _arm(bn_aug={"8 bits": 0.545, "2 bits": 0.52}),
                           "independent (one per path count)": NEW})
    one["_heldout"] = {"budgets": {lb: {"shared_minus_independent": {"heldout": g, "se": 0.004},
                                        "norm_minus_independent": {"heldout": 0.05, "se": 0.004}}
                                   for lb, g in (("8 bits", -0.004), ("2 bits", -0.025))}}
    no_twins = _res("paths", **{targets.PATHS_ARM: NEW})
    page["_seeds"] = {1: one, 2: no_twins}
    rows = targets.default_seed_rows(page)
    assert [(r[1], r[2]) for r in rows] == [(0, targets.PATHS_ARM), (1, targets.PATHS_ARM)]
    (_, _, _, worst, full, held, verdict), second = rows
    assert worst.startswith("-3.00 (2 bits") and full.startswith("-3.00") and held == "-"
    assert verdict == "missed / missed"  # 0.52 vs 0.55 at 8 bits, 0.50 vs 0.53 at 2
    assert second[3].startswith("-1.00 (2 bits") and second[4].startswith("-0.50")
    assert second[5] == "worst -2.50 (2 bits), full -0.40 (2 s.e. 0.80): missed / met"
    assert second[6] == "met / met"


def _held(loss: str, gaps: dict[str, float], drop: float | None = None) -> dict:
    out: dict = {"budgets": {lb: {f"{loss}_minus_independent": {"heldout": g, "se": 0.004}}
                             for lb, g in gaps.items()}}
    if drop is not None:
        out[f"{loss}_bit_drop"] = {"heldout": drop, "se": 0.004}
    return out


def test_the_default_is_read_on_the_seeds_mean_held_out_gaps():
    """pooled_default_row: the held-out gaps of the seeds that scored the *same* default arm, averaged
    per budget; the verdict reads the means (a miss at one seed of three can be met on the mean) and
    counts the seeds that met both targets alone; a seed whose default was an older arm, or a seed
    without held-out gaps, is left out; fewer than two seeds give no row. pooled_bit_drop: the 2-bit
    drop at every seed that scored it, twins or not."""
    ranged, clip = targets.RANGE_ARM, targets.CLIP_ARM

    def seed(n: int, arm: str, held: dict | None) -> dict:
        r = _res("bits", **{arm: NEW, "independent (one per bit-width)": OLD})
        r["settings"]["train"] = {"seed": n}
        r["_heldout"] = held or {}
        return r

    page = seed(0, ranged, _held("range3", {"8 bits": -0.005, "2 bits": 0.01}, drop=0.02))
    page["_seeds"] = {1: seed(1, ranged, _held("range3", {"8 bits": -0.035, "2 bits": 0.03}, drop=0.036)),
                      2: seed(2, ranged, _held("range3", {"8 bits": 0.005, "2 bits": -0.005}, drop=0.031)),
                      3: seed(3, clip, _held("clip", {"8 bits": -0.20, "2 bits": -0.20}, drop=0.5)),
                      4: seed(4, ranged, None)}
    key, arm, seeds, per_budget, worst, full, verdict = targets.pooled_default_row(page)
    assert (key, arm, seeds) == ("exp5_bits", ranged, "0 / 1 / 2")  # not seed 3's clip arm, nor seed 4
    assert per_budget == "8 bits -1.17, 2 bits +1.17"  # (-0.5 - 3.5 + 0.5) / 3, (1 + 3 - 0.5) / 3
    # sd of (-0.5, -3.5, 0.5) is 2.08; over sqrt(3): 1.20
    assert worst == "-1.17 (8 bits; s.e. over seeds 1.20; seeds -3.50 to +0.50)" and full == "-1.17"
    assert verdict == "met / missed (both met at 2 of 3 seeds alone)"  # seed 1 misses alone
    assert targets.pooled_bit_drop(page) == ("exp5_bits", ranged, {0: 0.02, 1: 0.036, 2: 0.031})
    page["_seeds"] = {3: page["_seeds"][3]}  # one seed of the same arm: nothing to pool
    assert targets.pooled_default_row(page) is None and targets.pooled_bit_drop(page) is None


def test_the_rules_at_half_the_cost_are_read_on_their_seeds_mean_with_the_cost_verdict():
    """half_cost_rows: every arm whose step costs at most 0.55x of the networks alone and that has
    held-out gaps, averaged over the seeds that read it (one is enough), with its mean 2-bit drop;
    the verdict names the cost target (0.5x). An arm above 0.55x, or one heldout.py never scored,
    is not listed."""
    corners, cheap_unscored = "corners arm", "cheap arm never scored"
    short_of = {corners: "corners-range3", targets.RANGE_ARM: "range3"}

    def seed(n: int, held: dict) -> dict:
        r = _res("bits", **{corners: NEW, targets.RANGE_ARM: NEW, cheap_unscored: NEW,
                            "independent (one per bit-width)": OLD})
        r["settings"]["train"] = {"seed": n}
        r["_heldout"] = held
        return r

    page = seed(0, _held("corners-range3", {"8 bits": -0.0125, "2 bits": 0.017}, drop=0.021))
    page["_heldout"]["budgets"]["8 bits"]["range3_minus_independent"] = {"heldout": 0.0, "se": 0.004}
    page["_seeds"] = {2: seed(2, _held("corners-range3", {"8 bits": -0.0131, "2 bits": 0.0066}, drop=0.019))}
    page["_step_cost"] = {corners: 0.48, targets.RANGE_ARM: 0.76, cheap_unscored: 0.39}
    (row,) = targets.half_cost_rows(page, short_of)
    key, arm, cost, seeds, per_budget, worst, full, drop, verdict = row
    assert (key, arm, cost, seeds) == ("exp5_bits", corners, "0.48x", "0 / 2")
    assert per_budget == "8 bits -1.28, 2 bits +1.18" and full == "-1.28"
    assert worst == "-1.28 (8 bits; s.e. over seeds 0.03; seeds -1.31 to -1.25)"
    assert drop == "2.00 (2.10 / 1.90)"
    assert verdict == "met / missed (both met at 0 of 2 seeds alone); cost met"
    page["_step_cost"][corners] = 0.54  # listed beside the target, and the cost read as missed
    assert targets.half_cost_rows(page, short_of)[0][-1].endswith("; cost missed")
    page["_seeds"] = {}  # one seed: no s.e. over seeds
    assert "s.e. over seeds -;" in targets.half_cost_rows(page, short_of)[0][5]
    page["_step_cost"][corners] = 0.6
    assert targets.half_cost_rows(page, short_of) == []


def test_a_bits_family_is_held_to_the_targets_by_the_weight_range_arm_against_the_plain_twins():
    """Config version 12: on bits alone the default is the clip arm on a weight range of 3 rms where it
    ran, else the clip arm. Every arm, the default too, is held against the networks trained alone on
    each channel's largest magnitude (what ``--rule fixed`` trains), never against those on the range
    (a measurement of the range on networks alone), whatever the order of the arms."""
    clip, ranged = targets.CLIP_ARM, targets.RANGE_ARM
    plain_twins = _arm(bn_aug={"8 bits": 0.56, "2 bits": 0.50})
    range_twins = _arm(bn_aug={"8 bits": 0.60, "2 bits": 0.57})
    res = _res("bits", **{"independent (one per bit-width), weight range 3 rms": range_twins,
                          clip: _arm(bn_aug={"8 bits": 0.55, "2 bits": 0.49}),
                          ranged: _arm(bn_aug={"8 bits": 0.59, "2 bits": 0.56}),
                          "fn3 ODO (geometric)": _arm(bn_aug={"8 bits": 0.50, "2 bits": 0.45}),
                          "independent (one per bit-width)": plain_twins})
    assert targets.default_arms(res)[0] == ranged
    assert targets.twins_of(res)[0] == "independent (one per bit-width)"
    rows = targets.target_rows(res)
    default = next(r for r in rows if "[fn3's default" in r[1] and "independent twin" in r[1])
    assert ranged in default[1] and "worst gap +3.00 pt" in default[2]  # 0.59 - 0.56, 0.56 - 0.50
    twin2 = next(r for r in rows if "2-bit twin well above chance" in r[1])
    assert "50.00%" in twin2[2]
    candidate = next(r for r in rows if r[1].startswith(f"every {clip} sub-model") and "(candidate)" in r[1])
    assert "worst gap -1.00 pt" in candidate[2]  # 0.55 - 0.56, 0.49 - 0.50
    odo = next(r for r in rows if r[1].startswith("every fn3 ODO (geometric) sub-model within 0.5"))
    assert "worst gap -6.00 pt" in odo[2]  # 0.50 - 0.56
    without = {**res, "arms": {k: v for k, v in res["arms"].items() if "weight range" not in k}}
    assert targets.default_arms(without)[0] == clip  # where the range arm did not run
    lone = {**res, "arms": {k: v for k, v in res["arms"].items() if k != "independent (one per bit-width)"}}
    assert targets.twins_of(lone) is None
    assert not any("independent twin" in r[1] for r in targets.target_rows(lone))


def test_each_searched_front_of_experiment_6_is_read_against_the_single_level_points_alone():
    """Two searched arms (the paper's ODO, fn3's default) get a row each: pooling their fronts would
    credit one arm with the other's points."""
    def point(bitops: float, acc: float) -> dict:
        return {"costs": {"bitops": bitops}, "test_accuracy": {"bn_recal": acc}}

    def single(accs: dict[str, tuple[float, float]]) -> dict:
        return {**_arm(bn_recal={lb: a for lb, (_, a) in accs.items()}),
                "costs": {lb: {"bitops": b} for lb, (b, _) in accs.items()}}

    res = {"experiment": "exp6_all_levels", "arms": {
        "odo": {**_arm(bn_recal={"full": 0.72}), "search": {"front": [point(10.0, 0.72)]}},
        "default": {**_arm(bn_recal={"full": 0.8}),
                    "search": {"front": [point(10.0, 0.80), point(1.0, 0.3)]}},
        "bits only": single({"8 bits": (10.0, 0.70), "2 bits": (2.0, 0.40)}),
        "channels only": single({"100%": (40.0, 0.75), "25%": (1.0, 0.30)}),
    }}
    rows = targets._front_rows(res)
    assert [r[1].split(":")[0] for r in rows] == ["odo", "default"]
    assert rows[0][2].startswith("1 of 4 ")  # 72% at 10 BitOPs beats 8 bits (70% at 10) alone
    assert rows[1][2].startswith("3 of 4 ")  # 80% at 10 BitOPs beats 8 bits and 100%; 30% at 1 matches 25%
    assert all(r[3] == "info" for r in rows)
