"""Never trust an image tree: corrupt JPEG/PNG files, damaged tar archives, hostile archive members
(``..``, absolute paths, symlinks, hardlinks, devices) and a damaged decode cache.

A bad image or archive raises :class:`fn3.errors.DataError`; an unsafe member is rejected or skipped
and nothing outside the archive is ever read; a damaged cache is ignored and rebuilt.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzz_strategies import FUZZ, corrupted, expect_only, leftovers, time_bound
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fn3.data import load_image_folder
from fn3.data.folder import cache_dir
from fn3.errors import DataError


def _image(colour: tuple[int, int, int], fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (6, 5), colour).save(buf, format=fmt)
    return buf.getvalue()


PNG, JPEG = _image((200, 10, 10), "PNG"), _image((10, 10, 200), "JPEG")
# member name -> bytes: two classes in train, one in test (classes are merged across splits)
TREE = {
    "train/cat/0.png": PNG,
    "train/cat/1.jpg": JPEG,
    "train/dog/0.jpg": JPEG,
    "train/dog/1.png": PNG,
    "test/cat/0.png": PNG,
}


def _write_tree(root: Path, tree: dict[str, bytes]) -> Path:
    for name, data in tree.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _tar(tree: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in tree.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return buf.getvalue()


TAR = _tar(TREE)
TAR_GZ = gzip.compress(TAR, mtime=0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """The dataset the undamaged tree gives (to compare damaged-but-accepted loads with)."""
    root = _write_tree(tmp_path_factory.mktemp("ref"), TREE)
    return load_image_folder(root, "train")


def _same(a, b) -> bool:
    return (
        a.classes == b.classes
        and torch.equal(a.images, b.images)
        and torch.equal(a.labels, b.labels)
    )


# -- images in a directory --------------------------------------------------------------------------


@settings(max_examples=150, **FUZZ)
@given(
    victim=st.sampled_from(["train/cat/0.png", "train/cat/1.jpg"]),
    png=corrupted(PNG, header=40),
    jpeg=corrupted(JPEG, header=200),
)
def test_corrupt_image_in_folder(
    tmp_path_factory: pytest.TempPathFactory, victim: str, png: bytes, jpeg: bytes
) -> None:
    root = _write_tree(tmp_path_factory.mktemp("tree"), TREE)
    (root / victim).write_bytes(png if victim.endswith(".png") else jpeg)
    out = expect_only(DataError, lambda: load_image_folder(root, "train"), names=victim)
    if not isinstance(out, Exception):  # e.g. a flip inside pixel data: a valid, different image
        assert tuple(out.images.shape) == (4, 3, 5, 6)
        assert out.labels.tolist() == [0, 0, 1, 1]


# -- tar archives -----------------------------------------------------------------------------------


@settings(max_examples=150, **FUZZ)
@given(
    blob=st.one_of(
        corrupted(TAR_GZ, header=32).map(lambda b: (b, ".tar.gz")),
        corrupted(TAR, header=512).map(lambda b: (gzip.compress(b, mtime=0), ".tar.gz")),
        corrupted(TAR, header=512).map(lambda b: (b, ".tar")),
    )
)
def test_damaged_archive(tmp_path_factory: pytest.TempPathFactory, reference, blob) -> None:
    data, suffix = blob
    path = tmp_path_factory.mktemp("tar") / f"data{suffix}"
    path.write_bytes(data)
    out = expect_only(DataError, lambda: load_image_folder(path, "train", cache=False), names=path)
    if not isinstance(out, Exception):  # a damage the tar format cannot see (pixels, padding)
        assert out.images.shape[0] <= 4 and out.images.dtype == torch.uint8


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _regular(name: str, size: int = 4) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def _special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


TRAVERSAL = {
    "dotdot": [_regular("../evil.png")],
    "dotdot_inside": [_regular("train/cat/../../../evil.png")],
    "absolute": [_regular("/tmp/train/cat/evil.png")],
    "windows_dotdot": [_regular("train\\..\\..\\evil.png")],
    "windows_drive": [_regular("C:/train/cat/evil.png")],
}
LINKS = {
    "symlink_out": [_link("train/cat/link.png", "/etc/passwd")],
    "symlink_up": [_link("train/cat/link.png", "../../../outside.png")],
    "symlink_dir": [_link("train/cat/sub", "/etc")],
    "hardlink_out": [_link("train/cat/hard.png", "/etc/passwd", tarfile.LNKTYPE)],
    "hardlink_in": [_link("train/cat/hard.png", "train/dog/0.jpg", tarfile.LNKTYPE)],
    "chardev": [_special("train/cat/dev.png", tarfile.CHRTYPE)],
    "fifo": [_special("train/cat/fifo.png", tarfile.FIFOTYPE)],
    "dir_named_png": [_special("train/cat/d.png", tarfile.DIRTYPE)],
}


@pytest.mark.parametrize("case", sorted(TRAVERSAL))
def test_archive_member_outside_tree_is_rejected(tmp_path: Path, case: str) -> None:
    path = tmp_path / "evil.tar.gz"
    path.write_bytes(gzip.compress(_tar(TREE, TRAVERSAL[case])))
    with pytest.raises(DataError, match="absolute|'\\.\\.'"):
        load_image_folder(path, "train", cache=False)


@pytest.mark.parametrize("case", sorted(LINKS))
def test_archive_links_and_devices_are_never_followed(tmp_path: Path, reference, case: str) -> None:
    """Link and device members are skipped: the dataset holds exactly the regular image members."""
    (tmp_path / "outside.png").write_bytes(_image((0, 255, 0), "PNG"))  # what a link would reach
    path = tmp_path / "links.tar"
    path.write_bytes(_tar(TREE, LINKS[case]))
    # Skipped means loaded without them: a loader that refused every archive would not pass here.
    with time_bound(10):
        out = load_image_folder(path, "train", cache=False)
    assert _same(out, reference)


# -- the decode cache -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cached_archive(tmp_path_factory: pytest.TempPathFactory):
    """An archive, the dataset it holds, and the bytes of its valid decode cache."""
    path = tmp_path_factory.mktemp("cached") / "data.tar.gz"
    path.write_bytes(TAR_GZ)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FN3_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        ds = load_image_folder(path, "train")
        (cache,) = (cache_dir() / "imagefolder").glob("*.npz")
        return path, ds, cache.name, cache.read_bytes()


def _cache_with(cached_archive, blob: bytes) -> Path:
    path, _, name, _ = cached_archive
    target = cache_dir() / "imagefolder" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(blob)
    return target


@settings(max_examples=120, **FUZZ)
@given(data=st.data())
def test_damaged_cache_is_ignored_and_rebuilt(cached_archive, data) -> None:
    path, ds, _, good = cached_archive
    target = _cache_with(cached_archive, data.draw(corrupted(good, header=128)))
    out = expect_only((), lambda: load_image_folder(path, "train"))
    assert _same(out, ds)
    assert not leftovers(target.parent)


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize(
    "arrays",
    [
        {"labels": np.array([0, 0, 1, 7])},  # a label past the classes
        {"labels": np.array([0, 0, 1, -1])},  # a negative label
        {"classes": np.array([], dtype=np.str_)},  # no classes
        {"images": np.zeros((4, 3, 5, 6), dtype=np.float32)},  # not pixels
        {"images": np.zeros((3, 3, 5, 6), dtype=np.uint8)},  # fewer images than labels
        {"classes": np.array([{"a": 1}], dtype=object)},  # a pickled object array
    ],
    ids=["label-too-big", "label-negative", "no-classes", "float-images", "count", "object"],
)
def test_inconsistent_cache_is_ignored(cached_archive, arrays: dict[str, np.ndarray]) -> None:
    """A cache that unzips fine but does not describe a dataset is ignored, not trusted."""
    path, ds, _, _ = cached_archive
    good = {
        "images": ds.images.numpy(),
        "labels": ds.labels.numpy(),
        "classes": np.array(ds.classes, dtype=np.str_),
    }
    _cache_with(cached_archive, _npz(**{**good, **arrays}))
    out = expect_only((), lambda: load_image_folder(path, "train"))
    assert _same(out, ds)
