"""BatchNorm re-estimation on clean or on augmented training batches: which fits the weights better?

Reads the trained models of ``exp3_layers_resnet20_18ep`` (``python benchmarks/repro/exp3_layers.py
--only exp3_layers_resnet20_18ep`` writes them under ``benchmarks/results/runs``) and scores every
sub-model on the test subset three ways: the stored statistics, statistics re-estimated on 20 clean
training batches (the protocol of ``docs/reproduction.md``), and on 20 batches augmented as in
training (``fn3.train.calibration_batches``, what fn3 uses since this measurement).

    python benchmarks/bn_calibration.py
"""

from __future__ import annotations

import sys
from itertools import islice
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "repro"))

import exp3_layers  # noqa: E402 - the experiment's own settings
from runner import experiment_data  # noqa: E402

import fn3  # noqa: E402
from fn3.data import batches  # noqa: E402
from fn3.evaluate import accuracy, bn_recalibrated  # noqa: E402
from fn3.run import load_run  # noqa: E402
from fn3.spec import parse_spec  # noqa: E402
from fn3.train import calibration_batches  # noqa: E402


def main() -> int:
    torch.set_num_threads(2)
    exp = exp3_layers.longer()
    cfg, train, _, test_ds = experiment_data(exp, quick=False)  # as the experiment's runner loads it
    test = list(batches(test_ds, 256, shuffle=False, mean=cfg.mean, std=cfg.std))
    n = cfg.recalibrate_batches
    clean = list(islice(batches(train, cfg.batch_size, shuffle=True, seed=cfg.seed + 1, mean=cfg.mean,
                                std=cfg.std), n))
    augmented = list(islice(calibration_batches(train, cfg), n))
    runs = ROOT / "benchmarks" / "results" / "runs" / exp.key
    print(f"| arm | sub-model | stored statistics | clean batches | augmented batches |\n|{' --- |' * 5}")
    for arm in exp.arms:
        for b in exp.budgets:
            run = runs / arm.slug / ("model" if arm.kind != "independent" else b.slug)
            if not (run / "model.safetensors").is_file():
                print(f"| {arm.name} | {b.label} | not trained: run the experiment first | | |")
                continue
            model = load_run(run).model.eval()
            spec = parse_spec(b.spec, fn3.space(model))
            acc = [accuracy(model, test, spec)]
            for calib in (clean, augmented):
                with bn_recalibrated(model, spec, calib, len(calib)):
                    acc.append(accuracy(model, test, spec))
            print(f"| {arm.name} | {b.label} | " + " | ".join(f"{a * 100:.2f}%" for a in acc) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
