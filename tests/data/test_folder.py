"""Image-folder trees: directories and tar archives made with PIL, unsafe members, the cache."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fn3.data import folder as folder_module
from fn3.data import load_dataset, load_image_folder
from fn3.errors import ConfigError, DataError

CLASSES = ("cat", "dog", "emu")


def png_bytes(value: int, size: tuple[int, int] = (6, 5), mode: str = "RGB") -> bytes:
    """A PNG of ``size`` (w, h) whose pixel (x, y) encodes value, x and y (lossless)."""
    h, w = size[1], size[0]
    yy, xx = np.mgrid[0:h, 0:w]
    pixels = np.stack([np.full((h, w), value), xx * 10, yy * 20], axis=-1).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def tree_files(per_class: dict[str, int], split: str = "train") -> dict[str, bytes]:
    """Member path -> bytes for ``<split>/<class>/<i>.png``; value encodes class and index."""
    files = {}
    for c, (name, count) in enumerate(per_class.items()):
        for i in range(count):
            files[f"{split}/{name}/{i:03d}.png"] = png_bytes(40 * c + i)
    return files


def write_dir(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


FILES = tree_files({"cat": 3, "dog": 2, "emu": 4}) | tree_files(
    {"cat": 1, "dog": 1, "emu": 1}, "test"
)


def check_train(ds) -> None:
    assert ds.classes == CLASSES
    assert ds.images.shape == (9, 3, 5, 6) and ds.images.dtype == torch.uint8
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    # Red channel encodes 40 * class + index; green/blue the x/y position (CHW layout).
    assert ds.images[:, 0, 0, 0].tolist() == [0, 1, 2, 40, 41, 80, 81, 82, 83]
    assert ds.images[0, 1, 0].tolist() == [0, 10, 20, 30, 40, 50]
    assert ds.images[0, 2, :, 0].tolist() == [0, 20, 40, 60, 80]


def test_directory_tree(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "tree", FILES)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    check_train(load_image_folder(root, "train"))
    test = load_image_folder(root, "test")
    assert test.labels.tolist() == [0, 1, 2] and test.name == "tree/test"


def test_directory_with_wrapper_folder(tmp_path: Path) -> None:
    write_dir(tmp_path / "outer" / "mydata", FILES)
    check_train(load_dataset("imagefolder", "train", tmp_path / "outer"))


@pytest.mark.parametrize(("suffix", "mode"), [(".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar", "w")])
def test_archive(tmp_path: Path, suffix: str, mode: str) -> None:
    files = {f"wrap/{k}": v for k, v in FILES.items()}  # one top-level folder
    files["wrap/README.txt"] = b"skip me"
    files["wrap/train/cat/._000.png"] = b"macOS resource fork, not an image"
    archive = write_tar(tmp_path / f"data{suffix}", files, mode)
    check_train(load_image_folder(archive, "train", cache=False))
    assert load_image_folder(archive, "test", cache=False).labels.tolist() == [0, 1, 2]


def test_classes_are_shared_between_splits(tmp_path: Path) -> None:
    # "cat" has no test images: test labels must still use the train indices.
    files = tree_files({"cat": 1, "dog": 1}) | {"test/dog/0.png": png_bytes(7)}
    archive = write_tar(tmp_path / "a.tar.gz", files)
    test = load_image_folder(archive, "test")
    assert test.classes == ("cat", "dog") and test.labels.tolist() == [1]


def test_limit_keeps_first_files_per_class(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "a.tar.gz", FILES)
    ds = load_image_folder(archive, "train", limit=2)
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert ds.images[:, 0, 0, 0].tolist() == [0, 1, 40, 41, 80, 81]
    with pytest.raises(ConfigError, match="limit"):
        load_image_folder(archive, "train", limit=0)


def test_grayscale_tree_gives_one_channel(tmp_path: Path) -> None:
    files = {f"train/{c}/0.png": png_bytes(50 * i, mode="L") for i, c in enumerate(CLASSES)}
    ds = load_image_folder(write_dir(tmp_path, files), "train")
    assert ds.image_shape == (1, 5, 6)
    # Mixed gray and colour images are all converted to RGB.
    (tmp_path / "train" / "cat" / "1.png").write_bytes(png_bytes(9))
    assert load_image_folder(tmp_path, "train").image_shape == (3, 5, 6)


@pytest.mark.parametrize("bad", ["../evil/train/cat/0.png", "train/../../cat/0.png", "/abs/0.png"])
def test_unsafe_member_is_rejected(tmp_path: Path, bad: str) -> None:
    archive = write_tar(tmp_path / "a.tar.gz", FILES | {bad: png_bytes(1)})
    with pytest.raises(DataError, match="absolute|'\\.\\.'") as info:
        load_image_folder(archive, "train")
    assert bad in str(info.value)
    assert not (tmp_path.parent / "evil").exists()


def test_corrupt_jpeg_names_member(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG")
    jpeg = buffer.getvalue()
    # Header intact, entropy-coded data cut off: fails while decoding the pixels.
    archive = write_tar(tmp_path / "a.tar.gz", FILES | {"train/dog/zzz.jpg": jpeg[:-40]})
    with pytest.raises(DataError, match=r"a\.tar\.gz:train/dog/zzz\.jpg is a corrupt image"):
        load_image_folder(archive, "train")
    # Not an image at all: fails while reading the header.
    garbage = write_tar(tmp_path / "b.tar.gz", FILES | {"train/dog/zzz.jpg": b"not a jpeg"})
    with pytest.raises(DataError, match=r"train/dog/zzz\.jpg is not a readable image"):
        load_image_folder(garbage, "train")


def test_mixed_sizes_name_the_file(tmp_path: Path) -> None:
    root = write_dir(tmp_path, FILES | {"train/emu/big.png": png_bytes(1, size=(7, 5))})
    with pytest.raises(DataError, match=r"big\.png is 7x5; expected 6x5"):
        load_image_folder(root, "train")


def test_missing_split_and_root(tmp_path: Path) -> None:
    root = write_dir(tmp_path / "t", FILES)
    with pytest.raises(DataError, match="no val/ folder"):
        load_image_folder(root, "val")
    archive = write_tar(tmp_path / "a.tar.gz", FILES)
    with pytest.raises(DataError, match="no images under val/"):
        load_image_folder(archive, "val")
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "nope", "train")
    whole = archive.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="cut.tar.gz is not a readable tar archive"):
        load_image_folder(tmp_path / "cut.tar.gz", "train")
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="not a readable tar archive"):
        load_image_folder(tmp_path / "broken.tar.gz", "train")


def test_cache_is_used_and_keyed_by_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "fn3-cache" in str(folder_module.cache_dir())  # the isolated dir from conftest
    archive = write_tar(tmp_path / "a.tar.gz", FILES)
    first = load_image_folder(archive, "train")
    cached = list(folder_module.cache_dir().glob("imagefolder/a-train-*.npz"))
    assert len(cached) == 1 and not list(cached[0].parent.glob("*.tmp"))

    def fail(*args, **kwargs):
        raise AssertionError("decoded although a cache exists")

    with monkeypatch.context() as patch:  # a nested context: keeps the isolated FN3_CACHE_DIR
        patch.setattr(folder_module, "_decode", fail)
        second = load_image_folder(archive, "train")
        with pytest.raises(AssertionError, match="decoded"):  # a different limit: another key
            load_image_folder(archive, "train", limit=1)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.classes == first.classes and second.name == first.name

    # Rewriting the archive (new size/mtime) invalidates the entry.
    write_tar(archive, tree_files({"cat": 1, "dog": 1}))
    assert len(load_image_folder(archive, "train")) == 2

    # A corrupt cache file is ignored, not trusted.
    for path in folder_module.cache_dir().glob("imagefolder/*.npz"):
        path.write_bytes(b"garbage")
    assert len(load_image_folder(archive, "train")) == 2


@pytest.fixture
def cifar_tarball(real_data: Path) -> Path:
    path = real_data / "cifar10-jpeg" / "cifar10-jpeg.tar.gz"
    if not path.is_file():
        pytest.skip(f"real CIFAR-10 JPEG archive not found at {path} (set FN3_TEST_DATA)")
    return path


def test_real_cifar10_tarball_subset(cifar_tarball: Path) -> None:
    ds = load_dataset("cifar10", "train", cifar_tarball.parent.parent, limit=5)
    assert len(ds) == 50 and ds.image_shape == (3, 32, 32) and ds.num_classes == 10
    assert ds.classes[0] == "airplane" and ds.classes[-1] == "truck"
    assert torch.bincount(ds.labels).tolist() == [5] * 10
    assert ds.images.float().std() > 20  # real photos, not blank
