"""load_dataset / list_datasets: names, the bundled digits, data-dir resolution, docs examples."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest
import torch

from fn3.data import list_datasets, load_dataset
from fn3.errors import ConfigError, DataError


def test_list_datasets() -> None:
    assert list_datasets() == ["cifar10", "digits", "fashion-mnist", "imagefolder", "mnist"]


def test_digits_default_dataset() -> None:
    train, test = load_dataset("digits"), load_dataset("digits", "test")
    assert train.image_shape == (1, 8, 8) and test.image_shape == (1, 8, 8)
    assert train.num_classes == 10 and test.num_classes == 10
    assert len(train) + len(test) == 1797 and 355 <= len(test) <= 365
    assert int(train.images.max()) == 255 and train.images.dtype == torch.uint8
    assert train.name == "digits/train" and test.name == "digits/test"
    # Stratified: every class has about 20 % of its images in test.
    counts_test = torch.bincount(test.labels, minlength=10).double()
    counts_all = counts_test + torch.bincount(train.labels, minlength=10).double()
    assert torch.allclose(
        counts_test / counts_all, torch.full((10,), 0.2, dtype=torch.float64), atol=0.01
    )
    # Deterministic, and train/test are disjoint images of the full set.
    again = load_dataset("digits", "test")
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    from sklearn.datasets import load_digits

    full = torch.from_numpy(load_digits().images.round().astype("uint8")).flatten(1)  # (1797, 64)
    ours = torch.cat([train.images, test.images]).flatten(1).float() * 16 / 255  # (1797, 64)
    assert torch.equal(ours.round().to(torch.uint8).unique(dim=0), full.unique(dim=0))


def test_limit_per_class() -> None:
    ds = load_dataset("digits", "train", limit=3)
    assert len(ds) == 30 and torch.bincount(ds.labels).tolist() == [3] * 10
    full = load_dataset("digits", "train")
    first_zeros = full.images[full.labels == 0][:3]
    assert torch.equal(ds.images[ds.labels == 0], first_zeros)


@pytest.mark.parametrize("limit", [0, -1, 2.5, True])
def test_bad_limit(limit) -> None:
    with pytest.raises(ConfigError, match="limit"):
        load_dataset("digits", limit=limit)


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset("imagenet")
    message = str(info.value)
    assert "imagenet" in message and all(n in message for n in list_datasets())


def test_bad_split() -> None:
    with pytest.raises(ConfigError, match="'val'.*expected 'train' or 'test'"):
        load_dataset("digits", "val")


@pytest.mark.parametrize("name", ["cifar10", "imagefolder", "mnist"])
def test_data_dir_needed(name: str) -> None:
    with pytest.raises(DataError, match="FN3_DATA_DIR"):
        load_dataset(name)


def test_missing_data_dir_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for name in ("cifar10", "mnist", "imagefolder"):
        with pytest.raises(DataError, match=str(missing)):
            load_dataset(name, "train", missing)


def test_missing_mnist_files_listed(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset("mnist", "test", tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "t10k-images-idx3-ubyte" in message
    assert "t10k-labels-idx1-ubyte" in message and "\n" not in message


@pytest.mark.parametrize(
    "module", ["fn3.data", "dataset", "idx", "cifar", "folder", "loader", "registry"]
)
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(module if "." in module else f"fn3.data.{module}")
    assert mod.__doc__ and "Example" in mod.__doc__
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
