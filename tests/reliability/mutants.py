"""Mutation check: break one loader (or training rule) at a time and run the tests that guard it.

A rejection test that still passes when its loader accepts every file guards nothing. For each
:class:`Mutant` below, :func:`run_mutants` replaces the real function by a broken one (a loader that
returns without reading, a ``train_step`` that never steps, a rule that trains only the smallest
sub-model), runs that mutant's tests in-process with ``pytest.main``, restores the function, and
records every test's outcome. ``tests/reliability/test_mutants.py`` runs this module once in a
subprocess (``python tests/reliability/mutants.py OUT.json``) and asserts that every listed test
failed under its mutant.

The replacement is by identity: every module (fn3's and the tests') that holds the real function
object under any name gets the broken one, so ``from fn3.export import load`` in a test and a lazy
import inside fn3 both see it; a method is replaced on its class. Adding a fixed-input rejection test
for a loader: add its node id to that loader's mutant.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
R = "tests/reliability/"


class Accepted:
    """What a broken loader returns: it took the file without a word."""

    def __repr__(self) -> str:
        return "<accepted without checking>"


def accept_everything(*args: Any, **kwargs: Any) -> Accepted:
    """A loader that accepts every file (and reads nothing)."""
    return Accepted()


def no_training(*args: Any, **kwargs: Any) -> float:
    """A ``train_step`` that returns an untrained loss (ln 10) without touching the weights."""
    return math.log(10.0)


def smallest_only(model: Any, *args: Any, **kwargs: Any) -> Callable[[int], list[Any]]:
    """A ``make_rule`` that ignores the rule and trains only the smallest sub-model."""
    import fn3

    smallest = fn3.space(model).smallest()
    return lambda step: [smallest]


@dataclass(frozen=True)
class Mutant:
    """``target`` (``module:function`` or ``module:Class.method``) replaced by ``broken``; every test
    in ``tests`` (node ids, or node-id prefixes for parametrized tests) must then fail."""

    target: str
    broken: Callable[..., Any]
    tests: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.target}={self.broken.__name__}"


MUTANTS = (
    # -- exported models, nested files, latency tables ----------------------------------------------
    Mutant("fn3.export.loading:load", accept_everything, (
        R + "test_fuzz_exports.py::test_exported_huge_description_is_rejected_before_allocating",
        R + "test_fuzz_exports.py::test_exported_header_too_deep",
        R + "test_fuzz_exports.py::test_exported_description_too_deep",
    )),
    Mutant("fn3.export.nested:load_nested", accept_everything, (
        R + "test_fuzz_exports.py::test_nested_description_too_deep",
    )),
    Mutant("fn3.cost.latency:LatencyTable.load", accept_everything, (
        R + "test_fuzz_exports.py::test_latency_table_huge_integer",
        R + "test_fuzz_exports.py::test_latency_table_too_deep",
        "tests/cost/test_latency.py::test_bad_table_files_name_the_file",
        "tests/cost/test_latency.py::test_unreadable_table_files",
    )),
    # -- checkpoints and run directories ------------------------------------------------------------
    Mutant("fn3.checkpoint:load_checkpoint", accept_everything, (
        R + "test_fuzz_checkpoints.py::test_checkpoint_wrong_tensors",
        "tests/test_train.py::test_checkpoint_errors",
    )),
    Mutant("fn3.checkpoint:read_checkpoint_meta", accept_everything, (
        R + "test_fuzz_checkpoints.py::test_checkpoint_not_fn3_metadata",
        R + "test_fuzz_checkpoints.py::test_checkpoint_metadata_too_deep",
    )),
    Mutant("fn3.run:load_run", accept_everything, (
        R + "test_fuzz_runs.py::test_run_model_metadata_edited",
        R + "test_fuzz_runs.py::test_run_config_error_names_the_file",
    )),
    # -- search results -----------------------------------------------------------------------------
    Mutant("fn3.search.result:SearchResult.load", accept_everything, (
        R + "test_fuzz_search.py::test_search_result_not_utf8",
        R + "test_fuzz_search.py::test_search_result_huge_number",
        R + "test_fuzz_search.py::test_search_result_too_deep",
        R + "test_fuzz_search.py::test_search_result_error_names_the_file",
    )),
    Mutant("fn3.search.result:load_results", accept_everything, (
        R + "test_fuzz_search.py::test_search_result_too_deep",
    )),
    # -- config files and specs ---------------------------------------------------------------------
    Mutant("fn3.config:load_config_file", accept_everything, (
        R + "test_fuzz_text.py::test_config_file_too_deep",
    )),
    Mutant("fn3.config:TrainConfig.from_dict", accept_everything, (
        R + "test_fuzz_text.py::test_config_not_a_table",
    )),
    Mutant("fn3.spec:Spec.from_json", accept_everything, (
        R + "test_fuzz_text.py::test_spec_huge_prefix_is_quick",
        R + "test_fuzz_text.py::test_spec_json_too_deep",
    )),
    Mutant("fn3.spec:parse_spec", accept_everything, (
        R + "test_fuzz_text.py::test_parse_spec_unreadable_file",
    )),
    # -- datasets -----------------------------------------------------------------------------------
    Mutant("fn3.data.idx:read_idx", accept_everything, (
        "tests/data/test_idx.py::test_truncated_payload",
        "tests/data/test_idx.py::test_wrong_magic_and_dtype",
    )),
    Mutant("fn3.data.cifar:load_cifar_binary", accept_everything, (
        "tests/data/test_cifar.py::test_binary_validation",
    )),
    Mutant("fn3.data.cifar:load_cifar_python", accept_everything, (
        R + "test_fuzz_datasets.py::test_pickle_cannot_allocate_beyond_its_size",
        R + "test_fuzz_datasets.py::test_cifar_labels_and_names_nested_through_the_memo",
        "tests/data/test_cifar.py::test_python_batch_validation",
    )),
    Mutant("fn3.data.cifar:restricted_loads", accept_everything, (
        R + "test_fuzz_datasets.py::test_pickle_globals_never_run",
        "tests/data/test_cifar.py::test_other_globals_are_rejected",
        "tests/data/test_cifar.py::test_garbage_pickle_is_a_data_error",
    )),
    Mutant("fn3.data.folder:load_image_folder", accept_everything, (
        R + "test_fuzz_images.py::test_archive_member_outside_tree_is_rejected",
        "tests/data/test_folder.py::test_unsafe_member_is_rejected",
        "tests/data/test_folder.py::test_corrupt_jpeg_names_member",
    )),
    # -- training rules -----------------------------------------------------------------------------
    Mutant("fn3.train:train_step", no_training, ("tests/test_train.py::test_each_rule_trains",)),
    Mutant("fn3.train:make_rule", smallest_only, ("tests/test_train.py::test_each_rule_trains",)),
)


class Swap:
    """Replace one function (by identity, everywhere) or one method (on its class); undo restores."""

    def __init__(self, target: str, broken: Callable[..., Any]):
        module_name, _, qualname = target.partition(":")
        self.module = importlib.import_module(module_name)
        owner: Any = self.module
        *path, self.attr = qualname.split(".")
        for part in path:
            owner = getattr(owner, part)
        self.owner = owner
        self.static = inspect.getattr_static(owner, self.attr)
        self.is_method = isinstance(owner, type)
        if self.is_method:
            wrap = type(self.static) if isinstance(self.static, (classmethod, staticmethod)) else None
            self.broken: Any = wrap(broken) if wrap else broken
        else:
            self.broken = broken

    def _replace(self, old: Any, new: Any) -> None:
        for mod in list(sys.modules.values()):
            if isinstance(mod, ModuleType):
                d = getattr(mod, "__dict__", {})
                for key, value in list(d.items()):
                    if value is old:
                        d[key] = new

    def apply(self) -> None:
        if self.is_method:
            setattr(self.owner, self.attr, self.broken)
        else:
            self._replace(self.static, self.broken)

    def undo(self) -> None:
        if self.is_method:
            setattr(self.owner, self.attr, self.static)
        else:
            self._replace(self.broken, self.static)


class Recorder:
    """A pytest plugin object: the outcome of each test (``failed`` if any phase failed)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.outcomes[report.nodeid] = "failed" if report.when == "call" else f"error in {report.when}"
        elif report.skipped or report.when == "call":
            self.outcomes.setdefault(report.nodeid, report.outcome)


def run_mutants(mutants: tuple[Mutant, ...] = MUTANTS) -> dict[str, dict[str, Any]]:
    """``{mutant name: {"outcomes": {node id: outcome}, "seconds": s}}``, one pytest session each."""
    import pytest
    import torch

    torch.set_num_threads(1)
    results = {}
    for mutant in mutants:
        swap = Swap(mutant.target, mutant.broken)
        recorder = Recorder()
        t0 = time.perf_counter()
        swap.apply()
        try:
            pytest.main(
                ["-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=", "--rootdir", str(ROOT),
                 *mutant.tests],
                plugins=[recorder],
            )
        finally:
            swap.undo()
        results[mutant.name] = {"outcomes": recorder.outcomes, "seconds": time.perf_counter() - t0}
    return results


if __name__ == "__main__":
    import os

    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT / "tests" / "reliability"))
    out = run_mutants()
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
