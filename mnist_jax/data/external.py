"""Extra labelled test sets from files (`evaluate --test_sets=NAME=PATH,...`), validated.

PATH is one of:
- an `.npz` file with `images` (N, 28, 28) uint8 and `labels` (N,) integers in 0..9;
- a directory holding exactly one IDX images file and one IDX labels file, gzip-compressed or
  not, recognised by the usual names (`*idx3*` images, `*idx1*` labels), e.g. a copy of
  `t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz`;
- a path prefix of such a pair, e.g. `/data/mnist/t10k` in a directory that also holds the
  training files.
Every check the official files get applies (IDX header against payload, shape, dtype, label
range, equal counts), and every failure is a one-line DataError naming the file. Each file's
sha256 and size are recorded, so a number in comparison.json names exactly the data behind it.
"""

import dataclasses
import hashlib
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mnist_jax.core.errors import DataError, UserError
from mnist_jax.data import sources

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclasses.dataclass
class TestSet:
    """A labelled set of MNIST-format digits read from `path`."""

    name: str
    path: str
    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) int32 in 0..9
    files: list[dict[str, Any]]  # per file: path, sha256, bytes

    def describe(self) -> dict[str, Any]:
        """The record comparison.json keeps: where the data came from and how much of it."""
        return {"path": self.path, "count": len(self.labels), "files": self.files}


def parse(text: str | list[str] | None) -> list[tuple[str, str]]:
    """`NAME=PATH[,NAME=PATH...]` (or the list absl makes of it) -> [(name, path)]."""
    items = text if isinstance(text, list) else (text or "").split(",")
    pairs = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise UserError(f"--test_sets entry {item!r} is not NAME=PATH (e.g. mine=digits.npz)")
        if not _NAME.fullmatch(name):
            raise UserError(
                f"--test_sets name {name!r} is invalid: use letters, digits, '_', '-', '.'"
            )
        if name in dict(pairs):
            raise UserError(f"--test_sets names {name!r} twice; names must be unique")
        pairs.append((name, path))
    return pairs


def _file_record(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"path": str(path), "sha256": digest, "bytes": path.stat().st_size}


def _check(images: np.ndarray, labels: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The shape, dtype, range and count checks the official files pass."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(
            f"{where}: images must be uint8 of shape (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"{where}: labels must be integers of shape (N,), got {labels.dtype} {labels.shape}"
        )
    if len(labels) != len(images):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels")
    if len(labels) == 0:
        raise DataError(f"{where}: the set is empty")
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(
            f"{where}: labels must lie in 0..9, found {int(labels.min())}..{int(labels.max())}"
        )
    return np.ascontiguousarray(images), labels.astype(np.int32)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"images", "labels"} - set(data.files)
            if missing:
                raise DataError(
                    f"{path}: an .npz test set needs arrays 'images' and 'labels'; it has "
                    f"{sorted(data.files)}"
                )
            return _check(data["images"], data["labels"], str(path))
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None


def _idx_pair(path: str) -> tuple[Path, Path]:
    """The images and labels IDX files of a directory or a path prefix."""
    p = Path(path).expanduser()
    candidates = (
        sorted(f for f in p.iterdir() if f.is_file())
        if p.is_dir()
        else sorted(f for f in p.parent.glob(p.name + "*") if f.is_file())
        if p.parent.is_dir()
        else []
    )
    found = {}
    for kind, tag in (("images", "idx3"), ("labels", "idx1")):
        files = [f for f in candidates if tag in f.name]
        if len(files) != 1:
            what = "none" if not files else ", ".join(f.name for f in files)
            raise DataError(
                f"--test_sets path {path}: expected exactly one IDX {kind} file (a name "
                f"containing '{tag}') in it, found {what}; give an .npz, a directory with one "
                "images and one labels file, or a prefix such as /data/mnist/t10k"
            )
        found[kind] = files[0]
    return found["images"], found["labels"]


def load(name: str, path: str) -> TestSet:
    """Reads and validates one set; a missing or malformed file is a one-line DataError."""
    p = Path(path).expanduser()
    if p.suffix == ".npz":
        if not p.is_file():
            raise DataError(f"--test_sets {name}: {path} does not exist")
        images, labels = _load_npz(p)
        files = [p]
    else:
        image_file, label_file = _idx_pair(path)
        images, labels = _check(
            sources.read_idx(image_file, gzipped=None),
            sources.read_idx(label_file, gzipped=None),
            f"{image_file} + {label_file}",
        )
        files = [image_file, label_file]
    return TestSet(name, str(path), images, labels, [_file_record(f) for f in files])


def load_all(text: str | list[str] | None) -> list[TestSet]:
    return [load(name, path) for name, path in parse(text)]
