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


def _reference(tmp_path: Path) -> Path:
    """The same run, uninterrupted, in a process like the interrupted ones (same thread count: CPU
    kernels are deterministic for a given thread count, not across thread counts)."""
    ref = tmp_path / "reference"
    proc = _start([*FLAGS, "--out", str(ref)])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return ref


def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    out = tmp_path / "run"
    rng = random.Random(1234)
    kills, deadline = 0, time.monotonic() + 420
    while True:
        args = ["--resume", str(out)] if (out / "config.json").exists() else [*FLAGS, "--out", str(out)]
        proc = _start(args)
        if kills < 5:
            try:
                proc.wait(timeout=rng.uniform(2.0, 4.5))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                kills += 1
                continue
        _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        assert proc.returncode == 0, err[-2000:]
        break
    assert kills >= 3  # the loop really interrupted the run
    assert time.monotonic() < deadline
    _same_weights(out, _reference(tmp_path))
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and len(steps) == 15  # one line per epoch, none duplicated


def test_sigint_stops_after_saving_and_resume_finishes(tmp_path):
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
    _same_weights(out, _reference(tmp_path))
