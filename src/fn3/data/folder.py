"""Image-folder trees (``<root>/<split>/<class>/*.jpg``) from a directory or a tar archive.

This is the layout most people keep their own data in, and the one the bundled CIFAR-10 JPEG
archive uses::

    train/airplane/0000.jpg  train/airplane/0001.jpg ... test/truck/0999.jpg

An archive (``.tar``, ``.tar.gz``, ``.tgz``) is read member by member in memory and never
extracted; member names that are absolute or contain ``..`` are rejected, non-image members are
skipped, and a single top-level folder wrapping the splits (``cifar10/train/...``) is allowed.
Classes are the class folders of all splits, sorted by name, so labels agree between ``train``
and ``test``. Images are decoded with Pillow to RGB (or to L if every image is grayscale) and must
all share one size.

Decoding the 60,000 CIFAR-10 JPEGs takes several seconds, so the decoded arrays of an archive are
cached as a ``.npz`` of plain ``.npy`` arrays (loaded with ``allow_pickle=False``) in
``$FN3_CACHE_DIR`` (default ``~/.cache/fn3``), keyed by the archive's absolute path, size, mtime,
the split and ``limit``; pass ``cache=False`` to skip it.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from fn3.data.folder import load_image_folder
    >>> root = Path(tempfile.mkdtemp())
    >>> for cls, colour in [("red", (255, 0, 0)), ("blue", (0, 0, 255))]:
    ...     (root / "train" / cls).mkdir(parents=True)
    ...     Image.new("RGB", (4, 4), colour).save(root / "train" / cls / "0.png")
    >>> ds = load_image_folder(root, "train")
    >>> ds.classes, tuple(ds.images.shape), ds.labels.tolist()
    (('blue', 'red'), (2, 3, 4, 4), [0, 1])
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import zipfile
import zlib
from collections import deque
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from fn3._io import one_line
from fn3.data.dataset import ImageDataset
from fn3.errors import ConfigError, DataError

__all__ = ["ARCHIVE_SUFFIXES", "IMAGE_EXTENSIONS", "cache_dir", "is_archive", "load_image_folder"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz", ".tar")
# Split folder names whose classes are merged, so every split gets the same label indices.
_SPLIT_NAMES = ("train", "test", "val", "valid", "validation")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
_CACHE_VERSION = 1

# One image found in the tree: (class name, file name, where it came from, encoded bytes or the
# path to read them from, so that a directory tree only reads the files ``limit`` keeps).
_Entry = tuple[str, str, str, bytes | Path]


def is_archive(path: str | Path) -> bool:
    """Whether ``path`` names a tar archive fn3 can read (by its suffix)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.lower().endswith(IMAGE_EXTENSIONS) and not base.startswith(".")


def cache_dir() -> Path:
    """Where decoded datasets are cached: ``$FN3_CACHE_DIR`` or ``~/.cache/fn3``."""
    env = os.environ.get("FN3_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fn3"


def load_image_folder(
    root: str | Path,
    split: str = "train",
    *,
    limit: int | None = None,
    name: str | None = None,
    cache: bool = True,
) -> ImageDataset:
    """Load ``split`` of an image-folder tree from a directory or a tar archive.

    Args:
        root: a directory holding ``<split>/<class>/<image>`` (possibly inside one wrapper folder),
            or a ``.tar``/``.tar.gz``/``.tgz`` archive with the same layout.
        split: the split folder to read, e.g. ``"train"`` or ``"test"``.
        limit: at most this many images per class (the first by file name); ``None`` for all.
        name: dataset name for messages; defaults to the root's name.
        cache: for archives, reuse/store the decoded arrays in :func:`cache_dir`.

    Returns:
        An :class:`ImageDataset` with images ``uint8 (N, C, H, W)`` (C = 3, or 1 if all images
        are grayscale), ordered by class, then file name.

    Raises:
        ConfigError: ``limit`` is not a positive integer.
        DataError: missing root or split, unsafe archive member, corrupt image, mixed sizes.
    """
    root = Path(root)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit is {limit!r}; expected a positive number of images per class")
    if not root.exists():
        raise DataError(
            f"{root} does not exist; expected a directory or .tar(.gz) archive with"
            f" {split}/<class>/*.jpg|png"
        )
    label = name or root.name.split(".")[0] or str(root)
    archive = root.is_file()
    if archive and not is_archive(root) and not tarfile.is_tarfile(root):
        raise DataError(f"{root} is not a tar archive; expected a directory or .tar/.tar.gz/.tgz")

    cache_file = _cache_file(root, split, limit) if archive and cache else None
    if cache_file is not None:
        cached = _load_cache(cache_file)
        if cached is not None:
            images, labels, classes = cached
            return ImageDataset(images, labels, classes, f"{label}/{split}")

    if archive:
        entries, classes = _scan_archive(root, split)
    else:
        entries, classes = _scan_directory(root, split)
    entries = _select(entries, classes, limit)
    if not entries:
        raise DataError(
            f"{root} has no images in {split}/<class>/; expected *.jpg, *.jpeg or *.png"
        )
    pixels = _decode(entries)  # (N, H, W, C) uint8
    class_index = {c: i for i, c in enumerate(classes)}
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
    labels = torch.tensor([class_index[e[0]] for e in entries], dtype=torch.int64)  # (N,)
    if cache_file is not None:
        _store_cache(cache_file, images, labels, classes)
    return ImageDataset(images, labels, classes, f"{label}/{split}")


def _select(entries: list[_Entry], classes: tuple[str, ...], limit: int | None) -> list[_Entry]:
    """Sort by (class, file name) and keep the first ``limit`` of each class."""
    order = {c: i for i, c in enumerate(classes)}
    entries = sorted(entries, key=lambda e: (order[e[0]], e[1]))
    if limit is None:
        return entries
    kept: list[_Entry] = []
    count: dict[str, int] = {}
    for entry in entries:
        if count.get(entry[0], 0) < limit:
            count[entry[0]] = count.get(entry[0], 0) + 1
            kept.append(entry)
    return kept


# --------------------------------------------------------------------------- directory trees


def _scan_directory(root: Path, split: str) -> tuple[list[_Entry], tuple[str, ...]]:
    base = root
    if not (root / split).is_dir():
        subdirs = [d for d in root.iterdir() if d.is_dir()]
        if len(subdirs) == 1 and (subdirs[0] / split).is_dir():
            base = subdirs[0]  # a single wrapper folder, e.g. cifar10-jpeg/train/...
        else:
            found = sorted(d.name for d in subdirs) or ["nothing"]
            raise DataError(
                f"{root} has no {split}/ folder (found {', '.join(found[:8])});"
                f" expected {root}/{split}/<class>/*.jpg|png"
            )
    classes: set[str] = set()
    entries: list[_Entry] = []
    for split_name in {*_SPLIT_NAMES, split}:
        split_dir = base / split_name
        if not split_dir.is_dir():
            continue
        for class_dir in split_dir.iterdir():
            if not class_dir.is_dir():
                continue
            files = [f for f in class_dir.iterdir() if _is_image_name(f.name) and f.is_file()]
            if files:
                classes.add(class_dir.name)
            if split_name == split:
                entries.extend((class_dir.name, f.name, str(f), f) for f in files)
    return entries, tuple(sorted(classes))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(
            f"cannot read {path}: {err.strerror or err}; expected a readable file"
        ) from err


# --------------------------------------------------------------------------- tar archives


def _member_parts(archive: Path, member_name: str) -> tuple[str, ...]:
    """The path components of a member, after rejecting absolute names and ``..``."""
    name = member_name.replace("\\", "/")
    if name.startswith("/") or PurePosixPath(name).is_absolute() or name[1:3] == ":/":
        raise DataError(
            f"{archive} holds the absolute member {member_name!r}; expected relative paths only"
        )
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise DataError(
            f"{archive} holds the member {member_name!r} with '..'; expected paths inside the tree"
        )
    return parts


def _scan_archive(archive: Path, split: str) -> tuple[list[_Entry], tuple[str, ...]]:
    # Image members are [wrapper/]<split>/<class>/<file>: remember each one's wrapper prefix.
    entries: dict[tuple[str, ...], list[_Entry]] = {}
    classes: dict[tuple[str, ...], set[str]] = {}
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for member in tar:  # sequential: a gzip stream cannot seek cheaply
                parts = _member_parts(archive, member.name)
                if not member.isfile() or not parts or not _is_image_name(parts[-1]):
                    continue
                if len(parts) not in (3, 4):
                    continue
                prefix, split_name, class_name = parts[:-3], parts[-3], parts[-2]
                if split_name in _SPLIT_NAMES or split_name == split:
                    classes.setdefault(prefix, set()).add(class_name)
                if split_name == split:
                    handle = tar.extractfile(member)
                    data = handle.read() if handle is not None else b""
                    source = f"{archive}:{member.name}"
                    entries.setdefault(prefix, []).append((class_name, parts[-1], source, data))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{archive} is not a readable tar archive ({one_line(err)}); expected a complete .tar(.gz)"
            " file"
        ) from err
    if not entries:
        raise DataError(
            f"{archive} has no images under {split}/<class>/; expected members like"
            f" {split}/<class>/0000.jpg (optionally inside one top-level folder)"
        )
    if len(entries) > 1:
        trees = ", ".join("/".join((*p, split)) for p in sorted(entries))
        raise DataError(f"{archive} holds several {split}/ trees ({trees}); expected exactly one")
    (prefix, found), *_ = entries.items()
    return found, tuple(sorted(classes[prefix]))


# --------------------------------------------------------------------------- decoding


def _decode(entries: list[_Entry]) -> np.ndarray:
    """Decode all entries into one ``uint8 (N, H, W, C)`` array (C = 3 or 1)."""
    opened: deque[Image.Image] = deque()
    for _, _, source, data in entries:  # pass 1: headers only (mode and size), cheap
        if isinstance(data, Path):
            data = _read(data)
        try:
            opened.append(Image.open(io.BytesIO(data)))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise DataError(
                f"{source} is not a readable image ({one_line(err)}); expected a JPEG or PNG"
            ) from err
    mode = "L" if all(im.mode in _GRAY_MODES for im in opened) else "RGB"
    width, height = opened[0].size
    for im, entry in zip(opened, entries, strict=True):
        if im.size != (width, height):
            raise DataError(
                f"{entry[2]} is {im.size[0]}x{im.size[1]}; expected {width}x{height} like"
                f" {entries[0][2]} (all images must share one size)"
            )
    out = np.empty((len(entries), height, width, 1 if mode == "L" else 3), dtype=np.uint8)
    for i, entry in enumerate(entries):  # pass 2: pixels
        im = opened.popleft()  # popped, so each decoded image is freed right after its copy
        try:
            pixels = np.asarray(im if im.mode == mode else im.convert(mode))  # (H, W[, 3])
        except (OSError, SyntaxError, ValueError) as err:
            raise DataError(
                f"{entry[2]} is a corrupt image ({one_line(err)}); expected a valid JPEG or PNG"
            ) from err
        out[i] = pixels.reshape(height, width, -1)
    return out


# --------------------------------------------------------------------------- cache


def _cache_file(archive: Path, split: str, limit: int | None) -> Path | None:
    try:
        stat = archive.stat()
        path = archive.resolve()
    except OSError:
        return None
    key = f"v{_CACHE_VERSION}|{path}|{stat.st_size}|{stat.st_mtime_ns}|{split}|{limit}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    stem = archive.name.split(".")[0]
    return cache_dir() / "imagefolder" / f"{stem}-{split}-{digest}.npz"


def _load_cache(path: Path) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]] | None:
    """The cached arrays, or ``None`` if absent or unusable (then the archive is decoded)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels, classes = npz["images"], npz["labels"], npz["classes"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    ok = (
        images.dtype == np.uint8
        and images.ndim == 4
        and labels.dtype == np.int64
        and labels.shape == images.shape[:1]
        and classes.dtype.kind == "U"
        and classes.ndim == 1
        and classes.size >= 1
        # labels index the classes; a cache is a file too, so check before trusting it
        and (labels.size == 0 or (int(labels.min()) >= 0 and int(labels.max()) < classes.size))
    )
    if not ok:
        return None
    return torch.from_numpy(images), torch.from_numpy(labels), tuple(str(c) for c in classes)


def _store_cache(
    path: Path, images: torch.Tensor, labels: torch.Tensor, classes: Iterable[str]
) -> None:
    """Write the cache atomically (temp file + ``os.replace``); failures only skip caching."""
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=path.stem, suffix=".tmp", delete=False
        ) as tmp:
            tmp_name = tmp.name
            np.savez(
                tmp,
                images=images.numpy(),  # (N, C, H, W) uint8
                labels=labels.numpy(),  # (N,) int64
                classes=np.array(list(classes), dtype=np.str_),
            )
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError:
        pass  # a read-only or full cache directory must not stop loading
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
