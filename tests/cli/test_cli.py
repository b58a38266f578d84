"""The command line: a real train / eval / info round trip, and bad inputs get one line and exit 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import fn3
from fn3.cli import main
from fn3.config import CONFIG_VERSION


def _fn3(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fn3", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mlp"
    rc = main(
        [
            "train",
            "--model",
            "mlp",
            "--data",
            "digits",
            "--epochs",
            "4",
            "--batch-size",
            "64",
            "--lr",
            "0.1",
            "--model-arg",
            "hidden=[64,64]",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    return out


def test_train_writes_a_run_directory(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["format"] == "fn3.train-config" and cfg["epochs"] == 4
    assert cfg["mean"] and cfg["std"]  # normalisation resolved and saved
    assert (run_dir / "model.safetensors").is_file()
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and "val_accuracy" in json.loads(lines[-1])


def test_eval_and_info(run_dir, capsys):
    assert main(["eval", str(run_dir), "--spec", "largest", "--spec", "neurons=0.5,bits=4"]) == 0
    out = capsys.readouterr().out
    assert "neurons=0.5,bits=4" in out and "%" in out
    assert main(["info", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "fc1.width" in out and "neurons" in out


def test_resume_finished_run_is_a_no_op(run_dir):
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0


def test_python_m_and_config_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "mlp"\nepochs = 1\nbatch_size = 256\n[model_kwargs]\nhidden = [16]\n')
    proc = _fn3("train", "--config", str(cfg), "--epochs", "2", "--out", str(tmp_path / "r"), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["epochs"] == 2 and saved["batch_size"] == 256 and saved["model_kwargs"] == {"hidden": [16]}


# The full catalogue of bad inputs lives in docs/errors.md (tests/test_errors_catalogue.py, in-process);
# these run as real `python -m fn3` processes to check the exit code and stderr end to end.
BAD = [
    (["train", "--model", "vgg", "--out", "{tmp}/o"], "unknown model 'vgg'"),
    (["train", "--epochs", "abc", "--out", "{tmp}/o"], "--epochs"),
    (["train", "--data", "mnist", "--data-dir", "{tmp}/missing", "--out", "{tmp}/o"], "missing"),
    (["eval", "{tmp}/nothing"], "does not exist"),
    (["train", "--spec-loss", "avg", "--out", "{tmp}/o"],
     "spec_loss='avg' is invalid; expected auto, mean, sum, shared, shared-sqrt or norm"),
    (["train", "--grid", "1,half", "--out", "{tmp}/o"], "--grid 1,half: expected kept fractions"),
    (["train", "--grid", "1,0", "--out", "{tmp}/o"], "grid=(1.0, 0.0) is invalid; expected a list of kept"),
    (["train", "--rule", "specs", "--grid", "none", "--out", "{tmp}/o"], "rule=specs needs the sub-models"),
    (["train", "--zero-init-residual", "--out", "{tmp}/o"], "model 'mlp' has no residual blocks"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_one_line_exit_2(tmp_path, args, message):
    proc = _fn3(*[a.format(tmp=tmp_path) for a in args])
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()  # nothing half written


def test_corrupt_data_file(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (d / name).write_bytes(b"\x00\x00\x08\x03garbage")
    proc = _fn3("train", "--data", "mnist", "--data-dir", str(d), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "train-images" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_bad_spec_for_run(run_dir):
    proc = _fn3("eval", str(run_dir), "--spec", "channels=0.5")
    assert proc.returncode == 2 and "does not nest channels" in proc.stderr
    proc = _fn3("eval", str(run_dir), "--spec", "fc1.width=1000")
    assert proc.returncode == 2 and "fc1.width" in proc.stderr


def test_training_rule_flags_reach_the_run(tmp_path):
    from fn3.nn.blocks import BasicBlock
    from fn3.run import load_run, read_config

    common = ["--model", "resnet20", "--model-arg", "width=4", "--data", "digits", "--epochs", "1",
              "--max-steps", "1", "--no-progress"]
    out = tmp_path / "r"
    assert main(["train", *common, "--spec-loss", "sum", "--zero-init-residual", "--out", str(out)]) == 0
    cfg = read_config(out)
    assert cfg.spec_loss == "sum" and cfg.zero_init_residual
    assert read_config(out).to_dict()["version"] == CONFIG_VERSION
    # one step from zero: the last norms of the blocks are still close to zero, the first ones are not
    blocks = [m for m in load_run(out, checkpoint=True).model.modules() if isinstance(m, BasicBlock)]
    assert max(float(b.bn2.weight.detach().abs().max()) for b in blocks) < 0.5
    assert min(float(b.bn1.weight.detach().abs().min()) for b in blocks) > 0.5


def test_levels_repeated_or_comma_joined_mean_the_same(tmp_path):
    from fn3.run import load_run, read_config

    common = ["--model", "resnet20", "--data", "digits", "--epochs", "1", "--max-steps", "1", "--no-progress"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", *common, "--levels", "channels", "--levels", "layers", "--out", str(a)]) == 0
    assert main(["train", *common, "--levels", "channels,layers", "--out", str(b)]) == 0
    assert read_config(a).levels == read_config(b).levels
    assert set(load_run(a).space.kinds()) == {"channels", "layers"}


def test_a_run_written_by_config_version_3_resumes_with_its_loss(tmp_path, capsys):
    """Version 4 made auto's loss on the grid norm; a version-3 run directory (auto meant shared) must
    go on with shared when resumed, and say so."""
    import json

    out = tmp_path / "v3"
    args = ["--model", "resnet20", "--data", "digits", "--epochs", "1", "--levels", "channels",
            "--no-progress"]
    assert main(["train", *args, "--max-steps", "1", "--out", str(out)]) == 0
    assert "(rule specs, spec loss mean, lr 0.2)" in capsys.readouterr().out  # channels alone: version 9
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["version"] == CONFIG_VERSION and cfg["spec_loss"] == "auto" and cfg["lr"] is None
    v8 = tmp_path / "v8"
    assert main(["train", *args, "--max-steps", "1", "--out", str(v8)]) == 0
    (v8 / "config.json").write_text(json.dumps({**cfg, "version": 8}))  # as config v8 wrote it
    assert main(["train", "--resume", str(v8), "--max-steps", "2", "--no-progress"]) == 0
    assert "(rule specs, spec loss norm, lr 0.1)" in capsys.readouterr().out  # version 8's channels rule
    (out / "config.json").write_text(json.dumps({**cfg, "version": 3, "lr": 0.1}))  # as config v3 wrote it
    assert main(["train", "--resume", str(out), "--max-steps", "2", "--no-progress"]) == 0
    assert "(rule specs, spec loss shared, lr 0.1)" in capsys.readouterr().out


def test_a_depth_family_trains_the_mean_at_twice_the_rate_and_old_runs_resume_as_written(tmp_path, capsys):
    """Version 6: a family nested in depth alone trains on the mean loss at lr 0.2 unless told; a run
    written by version 5 (auto: the norm-matched sum, lr 0.1 written out) resumes as it was trained."""
    import json

    args = ["--model", "resnet20", "--data", "digits", "--epochs", "1", "--levels", "layers", "--no-progress"]
    out = tmp_path / "deep"
    assert main(["train", *args, "--max-steps", "1", "--out", str(out)]) == 0
    assert "(rule specs, spec loss mean, lr 0.2)" in capsys.readouterr().out
    assert main(["train", *args, "--max-steps", "1", "--lr", "0.05", "--out", str(tmp_path / "given")]) == 0
    assert "(rule specs, spec loss mean, lr 0.05)" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["lr"] is None
    (out / "config.json").write_text(json.dumps({**cfg, "version": 5, "lr": 0.1}))  # as config v5 wrote it
    assert main(["train", "--resume", str(out), "--max-steps", "2", "--no-progress"]) == 0
    assert "(rule specs, spec loss norm, lr 0.1)" in capsys.readouterr().out


def test_train_says_which_rule_auto_picked(tmp_path, capsys):
    common = ["--model", "resnet20", "--data", "digits", "--epochs", "1", "--max-steps", "1", "--no-progress"]
    assert main(["train", *common, "--levels", "channels", "--out", str(tmp_path / "one")]) == 0
    assert "(rule specs, spec loss mean, lr 0.2)" in capsys.readouterr().out  # one level: the tied grid
    assert main(["train", *common, "--levels", "bits", "--out", str(tmp_path / "bits")]) == 0
    assert "(rule specs, spec loss norm, lr 0.1)" in capsys.readouterr().out  # bits alone: norm
    no_grid = ["--levels", "channels", "--grid", "none", "--out", str(tmp_path / "s")]
    assert main(["train", *common, *no_grid]) == 0
    assert "(rule sandwich, spec loss mean, lr 0.1)" in capsys.readouterr().out  # no grid: the tied sandwich
    assert main(["train", *common, "--levels", "channels,bits", "--out", str(tmp_path / "two")]) == 0
    assert "(rule full+odo, spec loss mean, lr 0.1)" in capsys.readouterr().out
    listed = ["--levels", "channels,bits", "--train-spec", "channels=0.5,bits=4",
              "--out", str(tmp_path / "b")]
    assert main(["train", *common, *listed]) == 0
    assert "(rule specs, spec loss norm, lr 0.1)" in capsys.readouterr().out  # listed: each trained
    # a run that finishes says it too (8 images per class: one short epoch)
    done = ["--model", "resnet20", "--data", "digits", "--epochs", "1", "--limit", "8", "--no-progress",
            "--levels", "channels", "--out", str(tmp_path / "done")]
    assert main(["train", *done]) == 0
    assert "(rule specs, spec loss mean, lr 0.2); run directory" in capsys.readouterr().out


def test_train_names_the_depths_its_grid_never_trains(tmp_path, capsys):
    """On 5-block stages the grid keeps 5/4/2/1 blocks: a run on the grid alone (``--specs-rotation
    even``) says 3 is never trained and gives the flags that train every depth; the default (rotation
    auto: every depth, 3 a step) says what a step trains instead, and with every depth listed (or on
    3-block stages) there is nothing to say."""
    from fn3.config import TrainConfig
    from fn3.train import untrained_note

    args = ["--model", "resnet32", "--data", "digits", "--epochs", "1", "--max-steps", "1", "--no-progress",
            "--levels", "layers"]
    assert main(["train", *args, "--specs-rotation", "even", "--out", str(tmp_path / "grid")]) == 0
    out = capsys.readouterr().out
    assert "never trains 3 blocks of stage1.depth, stage2.depth, stage3.depth" in out
    assert "--grid 1,0.8,0.6,0.4,0.2 --specs-per-step 3 --specs-rotation ends --lr 0.15" in out
    assert main(["train", *args, "--out", str(tmp_path / "auto")]) == 0
    out = capsys.readouterr().out
    assert "never trains" not in out and "3 of 5 specs a step, rotation ends" in out
    assert "lr 0.15" in out
    deep = fn3.create_model("resnet32", num_classes=10, levels=("layers",))
    assert untrained_note(deep, TrainConfig(grid=(1, 0.8, 0.6, 0.4, 0.2))) is None
    assert untrained_note(deep, TrainConfig()) is None  # rotation auto lists every depth
    assert untrained_note(deep, TrainConfig(train_specs=("layers=0.6",))) is None  # the user's choice
    assert untrained_note(deep, TrainConfig(rule="full+odo")) is None  # draws reach every depth
    short = fn3.create_model("resnet20", num_classes=10, levels=("layers",))
    assert untrained_note(short, TrainConfig()) is None  # 3/2/1 blocks: every depth on the grid
    nine = fn3.create_model("resnet56", num_classes=10, levels=("layers",))  # 9 blocks: 9/7/4/2/1
    note = untrained_note(nine, TrainConfig(specs_rotation="even")) or ""
    assert "never trains 3, 5, 6, 8 blocks" in note
    every = note.rsplit("--grid ", 1)[1].split()[0]  # the grid it gives trains every depth (k/9 -> k)
    assert note.endswith("--specs-per-step 4 --specs-rotation ends --lr 0.15")  # one fewer than the grid's 5
    assert untrained_note(nine, TrainConfig(grid=tuple(float(f) for f in every.split(",")))) is None


def test_search_and_export_name_a_depth_the_run_never_trained(tmp_path, capsys):
    """A budget whose best sub-model keeps 3 blocks (off the default grid of 5-block stages): `fn3
    search` and `fn3 export --budget` say so, with the --grid that trains it; a trained depth is silent."""
    from fn3.config import TrainConfig
    from fn3.train import untrained_of, untrained_pick

    run = tmp_path / "grid"
    assert main(["train", "--model", "resnet32", "--data", "digits", "--epochs", "1", "--max-steps", "1",
                 "--no-progress", "--levels", "layers", "--specs-rotation", "even", "--out", str(run)]) == 0
    capsys.readouterr()
    # stage1 alone: 1..5 blocks cost 6.2..8.6 MFLOPs (0.59 M a block); 7.5 M admits 1-3 blocks, and
    # after one step the 3-block member scores best of them on the validation split (11.9% vs <= 9.8%).
    assert main(["search", str(run), "--axes", "stage1.depth", "--strategy", "exhaustive",
                 "--budget", "flops=7.5M", "--no-progress"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    best = json.loads((run / "search" / "best.json").read_text())
    assert best["axes"]["stage1.depth"]["size"] == 3, best
    assert "note: this sub-model keeps 3 blocks of stage1.depth, a depth its run never trained" in out
    assert "(it trained the grid 1,0.75,0.5,0.25)" in out
    assert "--grid 1,0.8,0.6,0.4,0.2 --specs-per-step 3 --specs-rotation ends --lr 0.15" in out
    assert main(["export", str(run), "--budget", "flops=7.5M", "--out", str(tmp_path / "e")]) == 0
    assert "keeps 3 blocks of stage1.depth" in " ".join(capsys.readouterr().out.split())
    assert main(["export", str(run), "--spec", "stage1.depth=4", "--out", str(tmp_path / "f")]) == 0
    assert "note:" not in capsys.readouterr().out  # 4 blocks is on the grid
    # The nested file remembers what its run never trained: a sub-model read from it is warned about.
    assert main(["export", str(run), "--nested", "--out", str(tmp_path / "n")]) == 0
    nested = str(tmp_path / "n" / "nested.safetensors")
    assert main(["export", nested, "--spec", "stage2.depth=3", "--out", str(tmp_path / "g")]) == 0
    assert "keeps 3 blocks of stage2.depth" in " ".join(capsys.readouterr().out.split())
    assert main(["export", nested, "--spec", "layers=0.4", "--out", str(tmp_path / "h")]) == 0
    assert "note:" not in capsys.readouterr().out  # 2 blocks is on the grid
    # `fn3 info` says it of the run and of its nested file, before anyone picks a sub-model.
    for target in (str(run), nested):
        assert main(["info", target]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert ("depths never trained as such: 3 blocks of stage1.depth, stage2.depth, stage3.depth (it "
                "trained the grid 1,0.75,0.5,0.25)") in out, out
        flags = "--grid 1,0.8,0.6,0.4,0.2 --specs-per-step 3 --specs-rotation ends --lr 0.15"
        assert f"{flags} trains every depth" in out
    deep = fn3.create_model("resnet32", num_classes=10, levels=("layers",))
    sp = fn3.space(deep)
    three = fn3.parse_spec("layers=0.6", sp)

    def pick(cfg: TrainConfig) -> str | None:
        return untrained_pick(sp, three, *untrained_of(deep, cfg))

    assert pick(TrainConfig(grid=(1, 0.8, 0.6, 0.4, 0.2))) is None
    assert pick(TrainConfig(train_specs=("layers=0.6",))) is None  # listed
    assert "it trained the listed sub-models" in (pick(TrainConfig(train_specs=("layers=0.8",))) or "")
    assert pick(TrainConfig(rule="full+odo")) is None  # draws reach it


def test_version(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fn3 {version('fn3')}"


def test_help_lists_commands_in_the_order_a_user_meets_them(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    order = ["demo", "train", "eval", "info", "search", "export", "bench", "latency-table"]
    # A command name is followed by the column gap (2+ spaces); a wrapped help line's words are not.
    found = [re.search(rf"^\W*{re.escape(name)}\s{{2,}}", out, re.M) for name in order]
    assert all(found), out
    assert [m.start() for m in found] == sorted(m.start() for m in found), out


def test_info_describes_an_exported_model_and_a_nested_file(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--spec", "neurons=0.5,bits=4", "--out", str(tmp_path / "e")]) == 0
    assert main(["export", str(run_dir), "--nested", "--out", str(tmp_path / "n")]) == 0
    capsys.readouterr()
    for target in (tmp_path / "e" / "model.safetensors", tmp_path / "e"):
        assert main(["info", str(target)]) == 0
        out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
        assert "exported model" in out and "bytes (ideal" in out and "params" in out and "MFLOPs" in out
        assert "fc1.width=" in out
    assert main(["info", str(tmp_path / "n" / "nested.safetensors")]) == 0
    out = capsys.readouterr().out
    assert "nested file" in out and "fc1.width" in out and "neurons" in out
    assert "does not exist" not in out and "never trained" not in out  # no depth axis: nothing left out


def test_act_clip_flag_trains_resumes_and_exports_levels_per_bit_width(tmp_path):
    """`--act-clip per-bits`: the run's model has a level per bit-width, its 2-bit level moves in
    training (LSQ) while the shared level of the default stays put, the run resumes from its
    checkpoint, and an export from the run directory equals the run's own sub-model; the default
    (auto) gives a model nested in bits a level per bit-width, `--act-clip shared` one level."""
    import torch

    import fn3
    from fn3.nn.base import NestedActQuant
    from fn3.run import load_run, read_config

    common = ["--model", "resnet20", "--model-arg", "width=4", "--data", "digits", "--epochs", "1",
              "--levels", "bits", "--no-progress"]
    out = tmp_path / "per"
    assert main(["train", *common, "--act-clip", "per-bits", "--max-steps", "3", "--out", str(out)]) == 0
    assert read_config(out).act_clip == "per-bits"
    assert main(["train", "--resume", str(out), "--max-steps", "6", "--no-progress"]) == 0
    run = load_run(out, checkpoint=True)
    quantizers = [m for m in run.model.modules() if isinstance(m, NestedActQuant)]
    assert quantizers and all(q.alpha_bits is not None for q in quantizers)
    # The 2-bit levels learned (from 4, the level of a quantizer after a ReLU): in 6 steps LSQ's
    # gradient moved the farthest 0.065, PACT's clamp gradient 0.003.
    assert max(abs(float(q.alpha_bits[1]) - 4.0) for q in quantizers) > 0.02
    spec = run.space.uniform({"bits": 2})
    x = torch.randn(4, 1, 8, 8)
    with fn3.active(run.model, spec), torch.no_grad():
        ref = run.model(x)
    assert (fn3.export.export(run.model, spec)(x) - ref).abs().max() <= 1e-5
    default, shared = tmp_path / "default", tmp_path / "shared"
    assert main(["train", *common, "--max-steps", "3", "--out", str(default)]) == 0
    assert main(["train", *common, "--act-clip", "shared", "--max-steps", "3", "--out", str(shared)]) == 0
    per = load_run(default, checkpoint=True).model  # the default (auto) on a model nested in bits
    assert all(m.alpha_bits is not None for m in per.modules() if isinstance(m, NestedActQuant))
    plain = load_run(shared, checkpoint=True).model
    assert all(m.alpha_bits is None for m in plain.modules() if isinstance(m, NestedActQuant))
    assert main(["train", *common, "--act-clip", "sometimes", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_specs_per_step_flag_trains_resumes_and_refuses_what_it_cannot_do(tmp_path, capsys):
    """`--specs-per-step 2` is recorded in the run's config and kept on resume, so is
    `--specs-rotation smallest`; 1, a rotation without specs per step, or a model nested in several
    levels (whose rule draws), is one readable line, exit 2 and no run directory."""
    from fn3.run import read_config

    common = ["--model", "resnet20", "--model-arg", "width=4", "--data", "digits", "--epochs", "1",
              "--no-progress"]
    bad = tmp_path / "bad"
    out = tmp_path / "half"
    capsys.readouterr()
    assert main(["train", *common, "--levels", "bits", "--specs-per-step", "2", "--max-steps", "2",
                 "--out", str(out)]) == 0
    assert read_config(out).specs_per_step == 2
    # the run says what a step trains: 2 of the grid's 4 bit-widths, in the even rotation
    assert ", 2 of 4 specs a step, rotation even, lr " in " ".join(capsys.readouterr().out.split())
    assert main(["train", "--resume", str(out), "--max-steps", "4", "--no-progress"]) == 0
    assert read_config(out).specs_per_step == 2
    small = tmp_path / "small"
    assert main(["train", *common, "--levels", "bits", "--specs-per-step", "2", "--specs-rotation",
                 "smallest", "--max-steps", "1", "--out", str(small)]) == 0
    assert read_config(small).specs_rotation == "smallest"
    capsys.readouterr()
    assert main(["train", *common, "--levels", "bits", "--specs-rotation", "smallest",
                 "--out", str(bad)]) == 2
    assert "add --specs-per-step 2 or drop --specs-rotation" in capsys.readouterr().err and not bad.exists()
    assert main(["train", *common, "--levels", "bits", "--specs-per-step", "2", "--specs-rotation",
                 "corners", "--out", str(bad)]) == 2
    assert "leaves none: use --specs-per-step 3 or more" in capsys.readouterr().err and not bad.exists()
    assert main(["train", *common, "--levels", "bits", "--specs-per-step", "1", "--out", str(bad)]) == 2
    assert "specs_per_step=1 is invalid" in capsys.readouterr().err and not bad.exists()
    assert main(["train", *common, "--levels", "bits,channels", "--specs-per-step", "2",
                 "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "trains with full+odo: drop --specs-per-step" in err and "Traceback" not in err
    assert not bad.exists()


def test_weight_clip_flag_trains_resumes_and_exports_on_its_range(tmp_path):
    """`--weight-clip 2`: the run's layers quantize on a range of 2 rms (not their largest magnitude
    nor the default's 3 rms), the run resumes on it, and its 2-bit sub-model exported from the run's
    model, or read from the nested file `fn3 export --nested` writes of the run, equals the run's own;
    unset on a family nested in bits alone, the range is 3 rms (config version 12), and a run written
    by version 11 without one resumes on the largest magnitude it trained on; `--weight-clip 0` is the
    largest magnitude; a negative range is one readable error that writes nothing."""
    import torch

    import fn3
    from fn3.export import load_nested
    from fn3.nn.base import NestedModule
    from fn3.run import load_run, read_config

    common = ["--model", "resnet20", "--model-arg", "width=4", "--data", "digits", "--epochs", "1",
              "--levels", "bits", "--no-progress"]
    out = tmp_path / "clip"
    assert main(["train", *common, "--weight-clip", "2", "--max-steps", "3", "--out", str(out)]) == 0
    assert read_config(out).weight_clip == 2.0
    assert main(["train", "--resume", str(out), "--max-steps", "6", "--no-progress"]) == 0
    run = load_run(out, checkpoint=True)
    assert {m.weight_clip for m in run.model.modules() if isinstance(m, NestedModule)} == {2.0}
    spec = run.space.uniform({"bits": 2})
    x = torch.randn(4, 1, 8, 8)
    with fn3.active(run.model, spec), torch.no_grad():
        ref = run.model(x)
        plain = fn3.nn.base.set_weight_clip(run.model, 0.0)(x)  # the same weights at max|w|
    fn3.nn.base.set_weight_clip(run.model, 2.0)
    assert (plain - ref).abs().max() > 1e-3  # the range changes the 2-bit model
    assert (fn3.export.export(run.model, spec)(x) - ref).abs().max() <= 1e-5
    # the run's nested file rebuilds the range from the run's model options: its 2-bit sub-model is
    # the export of the run's
    assert main(["export", str(out), "--nested", "--out", str(tmp_path / "n")]) == 0
    read = load_nested(tmp_path / "n" / "nested.safetensors", spec)
    assert {m.weight_clip for m in read.model.modules() if isinstance(m, NestedModule)} <= {2.0}
    assert (read.model(x) - fn3.export.export(run.model, spec)(x)).abs().max() <= 1e-5
    default = tmp_path / "default"
    assert main(["train", *common, "--max-steps", "1", "--out", str(default)]) == 0
    assert read_config(default).weight_clip is None

    def clips(run_dir):
        return {m.weight_clip for m in load_run(run_dir, checkpoint=True).model.modules()
                if isinstance(m, NestedModule)}

    assert clips(default) == {3.0}
    zero = tmp_path / "zero"
    assert main(["train", *common, "--weight-clip", "0", "--max-steps", "1", "--out", str(zero)]) == 0
    assert clips(zero) == {0.0}
    # a run of config version 11 that left the range unset trained on the largest magnitude: it
    # resumes on it (read as 3 rms, the resumed steps would train another model)
    saved = json.loads((zero / "config.json").read_text())
    (zero / "config.json").write_text(json.dumps({**saved, "version": 11, "weight_clip": None}))
    assert main(["train", "--resume", str(zero), "--max-steps", "2", "--no-progress"]) == 0
    assert clips(zero) == {0.0} and read_config(zero).weight_clip == 0.0
    assert main(["train", *common, "--weight-clip", "-1", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


def test_export_with_weight_and_activation_bits_set_apart(run_dir, tmp_path, capsys):
    """``--spec bits=2,abits=4``: the 2-bit file (the same stored bytes as ``bits=2``) run on 4-bit
    activations, a sub-model the nested model gives without training it apart."""
    from safetensors import safe_open

    for spec, name in (("bits=2", "b2"), ("bits=2,abits=4", "w2a4"), ("bits=4", "b4")):
        assert main(["export", str(run_dir), "--spec", spec, "--out", str(tmp_path / name)]) == 0

    def codes(name: str):  # the bit-packed weight codes of the exported file
        with safe_open(str(tmp_path / name / "model.safetensors"), "pt") as f:
            return f.get_tensor("codes")

    assert codes("w2a4").equal(codes("b2")) and codes("b2").numel() < codes("b4").numel()
    assert main(["eval", str(run_dir), "--spec", "bits=2", "--spec", "bits=2,abits=4"]) == 0
    out = capsys.readouterr().out
    assert "bits=2,abits=4" in out
    assert main(["eval", str(run_dir), "--spec", "abits=9"]) == 2  # a user error: no traceback
    err = capsys.readouterr().err
    assert "abits=9" in err and "whole number of bits in 2..8" in err and "Traceback" not in err
