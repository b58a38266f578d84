"""Distributed overhead: 1 vs 2 processes (torchrun, gloo, loopback) for the same global batch.

Trains the same run twice, side by side in one script: once with ``torchrun --nproc_per_node=1`` and
once with ``--nproc_per_node=2``, same config, seed and global batch. Reports training throughput
(images per second over the whole run, from the run's own metrics) as a ratio, and the largest
relative difference between the two final models. On these 2-core machines no speed-up is expected
(two processes share two cores); the point is that the overhead is small and the result the same.

* ``mlp`` on MNIST: no BatchNorm, so the two runs must give the same weights (up to float rounding
  of the gradient all-reduce);
* ``resnet20`` on a CIFAR-10 subset: BatchNorm normalises each rank's shard with its own statistics
  (as in any DDP run without SyncBatchNorm), so its weights differ slightly; throughput only.

    python benchmarks/distributed.py           # a few minutes
    python benchmarks/distributed.py --quick   # seconds

Writes ``docs/benchmarks/distributed.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
NOTE = (
    "Throughput on a shared 2-core machine is noisy (other jobs ran meanwhile): read the ratio as "
    "'no large overhead', not as a speed-up. The weight difference is measured after the whole run: "
    "the first steps agree to about 1e-6 (tests/test_distributed.py checks <= 1e-4: the MLP after 2 "
    "epochs on digits, ResNet-20 with synchronised BatchNorm after 2 steps), but training amplifies "
    "float rounding over hundreds of steps (the runs use different thread counts and reduction "
    "orders); one process run with 1 vs 2 threads drifts apart as far."
)
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(nproc: int, args: list[str], out: Path) -> float:
    """Run ``fn3 train`` under torchrun; return the wall time in seconds."""
    cmd = [
        TORCHRUN,
        f"--nproc_per_node={nproc}",
        f"--master_port={_port()}",
        "--master_addr=127.0.0.1",
        "-m",
        "fn3",
        "train",
        *args,
        "--out",
        str(out),
        "--no-progress",
    ]
    # Each process gets an equal share of the cores, so 1 and 2 processes use the same hardware.
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // nproc))}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"torchrun failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def throughput(out: Path) -> float:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return sum(x["images_per_s"] for x in lines) / len(lines)


def max_rel_diff(a: Path, b: Path) -> float:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    worst = 0.0
    for k in wa:
        if wa[k].is_floating_point():
            d = (wa[k] - wb[k]).abs().max() / wa[k].abs().max().clamp_min(1e-12)
            worst = max(worst, float(d))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    a = ap.parse_args()
    common = ["--eval-spec", "largest", "--seed", "0"]
    cases = {
        "mlp / MNIST": [
            "--model",
            "mlp",
            "--data",
            "mnist",
            "--data-dir",
            str(DATA / "mnist"),
            "--batch-size",
            "256",
            "--epochs",
            "1" if a.quick else "2",
            "--limit",
            "100" if a.quick else "2000",
            *common,
        ],
        "resnet20 / CIFAR-10": [
            "--model",
            "resnet20",
            "--levels",
            "channels,layers",
            "--data",
            "cifar10",
            "--data-dir",
            str(DATA / "cifar10-jpeg"),
            "--batch-size",
            "64",
            "--epochs",
            "1",
            "--limit",
            "20" if a.quick else "200",
            *common,
        ],
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in cases.items():
            outs, walls = {}, {}
            for nproc in (1, 2):
                outs[nproc] = Path(tmp) / f"{name.split()[0]}-{nproc}"
                walls[nproc] = train(nproc, args, outs[nproc])
            tp1, tp2 = throughput(outs[1]), throughput(outs[2])
            rows.append((name, tp1, tp2, tp2 / tp1, walls[1], walls[2], max_rel_diff(outs[1], outs[2])))
            print(rows[-1], flush=True)
    lines = [
        "| run | 1 proc img/s | 2 procs img/s | 2 / 1 | 1 proc wall s | 2 procs wall s "
        "| max rel. weight diff |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {n} | {t1:,.0f} | {t2:,.0f} | {r:.2f}x | {w1:.1f} | {w2:.1f} | {d:.1e} |"
        for n, t1, t2, r, w1, w2, d in rows
    ]
    table = "\n".join(lines)
    cmd = "python benchmarks/distributed.py" + (" --quick" if a.quick else "")
    md = (
        f"### Distributed training: 1 vs 2 processes, same global batch (torchrun, gloo, CPU)\n\n"
        f"Command: `{cmd}`. Throughput is the mean of the run's per-epoch images/s (all ranks "
        "together); wall time includes process start-up and evaluation. Each process gets "
        "cpu_count / nproc threads. " + NOTE + "\n\n"
        f"{table}\n"
    )
    print(md)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "distributed.md").write_text(md)


if __name__ == "__main__":
    main()
