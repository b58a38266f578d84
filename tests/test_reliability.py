"""Crash safety: SIGKILL at random moments + resume ends bit-identical; SIGINT stops cleanly."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

FLAGS = [
    "--model",
    "mlp",
    "--data",
    "digits",
    "--epochs",
    "15",
    "--batch-size",
    "64",
    "--model-arg",
    "hidden=[64,64]",
    "--eval-spec",
    "largest",
    "--checkpoint-every",
    "7",
    "--no-progress",
]


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fn3", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same run, uninterrupted, in a process like the interrupted ones (same thread count: CPU
    kernels are deterministic for a given thread count, not across thread counts); made once."""
    ref = tmp_path_factory.mktemp("reference") / "run"
    proc = _start([*FLAGS, "--out", str(ref)])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return ref


def _epochs_done(out: Path) -> int:
    metrics = out / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path, reference):
    out = tmp_path / "run"
    rng = random.Random(1234)
    kills, deadline = 0, time.monotonic() + 420
    while True:
        args = ["--resume", str(out)] if (out / "config.json").exists() else [*FLAGS, "--out", str(out)]
        done = _epochs_done(out)
        proc = _start(args)
        if kills < 5:
            # Kill at a random moment once this process has trained an epoch (steps, checkpoint
            # writes, the epoch's metrics line): tied to the run's progress, not to a fixed window of
            # seconds, which a fast machine's whole run (about 3 s here) could fall inside.
            while proc.poll() is None and _epochs_done(out) <= done:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.15))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                kills += 1
                continue
        _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert proc.returncode == 0, err[-2000:]
        break
    assert kills >= 3  # the loop really interrupted the run
    assert time.monotonic() < deadline
    _same_weights(out, reference)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and len(steps) == 15  # one line per epoch, none duplicated


def test_sigint_stops_after_saving_and_resume_finishes(tmp_path, reference):
    out = tmp_path / "run"
    proc = _start([*FLAGS, "--out", str(out)])
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.safetensors").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "continue with: fn3 train --resume" in stdout
    assert not (out / "model.safetensors").exists()
    resumed = _start(["--resume", str(out)])
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    _same_weights(out, reference)


def test_search_sigint_says_how_to_resume_and_writes_no_front(tmp_path, search_run):
    out = tmp_path / "search"
    proc = _search(search_run, out, resume=False)
    journal, deadline = out / "scores-val.jsonl", time.monotonic() + 120
    while not (journal.exists() and len(journal.read_text().splitlines()) > 5):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "continue with the same command and --resume" in err and "Traceback" not in err
    assert not (out / "front.json").exists()
    resumed = _search(search_run, out, resume=True)
    stdout, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert int(next(ln for ln in stdout.splitlines() if ln.startswith("resuming:")).split()[1]) >= 5


def _search(run: Path, out: Path, resume: bool) -> subprocess.Popen:
    args = [str(run), "--strategy", "random", "--strategy", "heuristic", "--max-evals", "20",
            "--budget", "flops=500k", "--no-progress", "--out", str(out), *(["--resume"] if resume else [])]
    # A shell that starts the tests in the background makes them ignore SIGINT, and children inherit
    # that; Ctrl-C in a terminal is the default disposition, so restore it for the search.
    return subprocess.Popen([sys.executable, "-m", "fn3", "search", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _points(out: Path) -> list[list[tuple]]:
    from fn3.search.result import load_results

    return [[(p.spec, p.accuracy, p.test_accuracy, tuple(sorted(p.costs.items()))) for p in res.points]
            for res in load_results(out / "front.json")]


@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    """A briefly trained nested ResNet-20 (8 channels wide) on digits: 20 scores take about 13 s."""
    from fn3.config import TrainConfig
    from fn3.run import train_run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("search") / "run"
    train_run(TrainConfig(model="resnet20", levels=("channels", "layers"), data="digits", epochs=1,
                          batch_size=64, seed=0, model_kwargs={"width": 8}), run, progress=False)
    torch.set_num_threads(threads)
    return run


def test_search_sigkill_at_random_moments_then_resume_gives_the_same_front(tmp_path, search_run):
    """`fn3 search --resume` after SIGKILLs (during start-up, scoring or writing) ends with the points
    and front of an uninterrupted search, re-scoring nothing the journal already held."""
    run = search_run
    out = tmp_path / "search"
    rng = random.Random(99)
    journal = out / "scores-val.jsonl"
    kills, reused, deadline = 0, [], time.monotonic() + 300
    while True:
        proc = _search(run, out, resume=kills > 0)
        if kills < 4:
            # The first kill lands at a random moment (likely start-up); the others once the journal
            # holds a random number of new scores, plus a random delay: mid-scoring or mid-writing.
            before = len(journal.read_text().splitlines()) if journal.exists() else 0
            want = before + rng.randint(2, 4)  # 3 kills: at most 12 of the 20 scores
            wait_until = time.monotonic() + (rng.uniform(0.5, 3.0) if kills == 0 else 60)
            while proc.poll() is None and time.monotonic() < wait_until:
                if kills and journal.exists() and len(journal.read_text().splitlines()) >= want:
                    time.sleep(rng.uniform(0.0, 0.4))
                    break
                time.sleep(0.02)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                kills += 1
                continue
        stdout, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert proc.returncode == 0, err[-2000:]
        reused += [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("resuming:")]
        break
    assert kills >= 3 and time.monotonic() < deadline
    ref = tmp_path / "reference"
    proc = _search(run, ref, resume=False)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert _points(out) == _points(ref)
    assert (out / "best.json").read_text() == (ref / "best.json").read_text()
    # The journal holds each scored spec once: nothing already journaled was scored again.
    lines = (out / "scores-val.jsonl").read_text().splitlines()[1:]
    specs = [json.loads(line)["spec"] for line in lines if line]
    assert len(specs) == len({json.dumps(s, sort_keys=True) for s in specs})
    assert reused and reused[0] >= 3  # the last run started from the journal, not from scratch
