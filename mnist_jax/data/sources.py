"""MNIST files from disk (or a download, or TFDS) into host numpy arrays, verified.

Two sources give the same arrays: the four official gzip IDX files (verified by sha256, no extra
dependencies) and a prepared TFDS `mnist` dataset (for setups that already keep data in TFDS).
Nothing is cached to disk except the IDX downloads themselves. Splitting, subsampling and PCA live
in dataset.py; everything that runs on the device in preprocess.py and augment.py.
"""

import contextlib
import gzip
import hashlib
import http.client
import importlib.util
import math
import os
import tempfile
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from mnist_jax.core.errors import DataError

# Key -> (file name, sha256 of the .gz file), as published alongside the data (SHA256SUMS) and in
# TFDS's url_checksums/mnist.txt.
FILES: dict[str, tuple[str, str]] = {
    "train_images": (
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    "train_labels": (
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "test_images": (
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "test_labels": (
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}

# Public mirrors of the original files (yann.lecun.com no longer serves them reliably).
MIRRORS: tuple[str, ...] = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)

SOURCES = ("idx", "tfds")

_IDX_MAGIC = {2051: "images", 2049: "labels"}  # 0x0803 / 0x0801: unsigned bytes, 3 / 1 dims
_CHUNK = 1 << 20

# (images (N, 28, 28) uint8, labels (N,) int32) of the official training and test sets.
Arrays = tuple[np.ndarray, np.ndarray]


def read_idx(path: str | os.PathLike, gzipped: bool | None = True) -> np.ndarray:
    """Parses one MNIST IDX file into a uint8 array: gzip-compressed, or with `gzipped=None` either.

    Used directly, the file may be anything (its checksum is checked only by `load_idx`), so
    nothing is trusted: the header must declare 28x28 images or a label vector, the payload is
    read in chunks and must hold exactly the bytes the header declares (memory never grows past
    what the file really holds, whatever size a garbled header claims), and labels must be 0..9.
    Every failure is a DataError naming the file.
    """
    path = Path(path)
    try:
        if gzipped is None:
            with path.open("rb") as f:
                gzipped = f.read(2) == b"\x1f\x8b"  # the gzip magic number
        with gzip.open(path, "rb") if gzipped else path.open("rb") as f:
            shape, kind, header_len = _read_idx_header(f, path)
            size = math.prod(shape)  # Python integers: no overflow for any header
            payload = bytearray()
            while len(payload) < size and (chunk := f.read(min(_CHUNK, size - len(payload)))):
                payload += chunk
            extra = len(f.read(1))
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path} is not a complete gzip file ({e}); expected a gzip-compressed IDX file, "
            "delete it and provide the original"
        ) from e
    if len(payload) != size or extra:
        actual = f"{header_len + len(payload)}" if not extra else f"more than {header_len + size}"
        raise DataError(
            f"{path}: {actual} bytes after decompression, but its header declares {kind} of "
            f"shape {shape}, i.e. exactly {header_len + size} bytes; the file is truncated or "
            "corrupt"
        )
    array = np.frombuffer(payload, dtype=np.uint8).reshape(shape)
    array.flags.writeable = False
    if kind == "labels" and len(array) and (bad := int(array.max())) > 9:
        index = int(np.argmax(array > 9))
        raise DataError(
            f"{path}: label {bad} (first bad one at index {index}); MNIST labels are 0..9, so "
            "this is not an MNIST label file or it is corrupt"
        )
    return array


def _read_idx_header(f: BinaryIO, path: Path) -> tuple[tuple[int, ...], str, int]:
    """(shape, 'images' or 'labels', header length) of an open IDX stream, checked."""
    head = f.read(8)
    if len(head) < 8:
        raise DataError(
            f"{path}: {len(head)} bytes after decompression, too short for an IDX header"
        )
    magic = int.from_bytes(head[:4], "big")
    if magic not in _IDX_MAGIC:
        raise DataError(
            f"{path}: IDX magic number {magic}, expected 2051 (images) or 2049 (labels)"
        )
    kind, ndim = _IDX_MAGIC[magic], magic & 0xFF
    header_len = 4 + 4 * ndim
    rest = f.read(header_len - 8)
    if len(rest) < header_len - 8:
        raise DataError(f"{path}: truncated IDX header ({8 + len(rest)} of {header_len} bytes)")
    dims = head[4:] + rest
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
    if kind == "images" and shape[1:] != (28, 28):
        raise DataError(
            f"{path}: its header declares images of {shape[1]}x{shape[2]} pixels; MNIST images "
            "are 28x28"
        )
    return shape, kind, header_len


def verify_file(path: str | os.PathLike, sha256: str) -> None:
    """Checks a data file against its published sha256, so that corrupt data fails loudly."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"MNIST file {path.name} not found in {path.parent}. Put the four MNIST files "
            f"({', '.join(name for name, _ in FILES.values())}) in a directory and point "
            "config.data.dir or the MNIST_DIR environment variable at it, or leave both unset to "
            f"download them (needs network) into {default_cache_dir()}"
        )
    with path.open("rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    if actual != sha256:
        raise DataError(
            f"{path}: sha256 is {actual}, expected {sha256}; the file is corrupt or not the "
            "original MNIST file, delete it and provide or download it again"
        )


def default_cache_dir() -> Path:
    """Where downloads go: $MNIST_JAX_CACHE if set, else ~/.cache/mnist_jax/mnist."""
    if cache := os.environ.get("MNIST_JAX_CACHE"):
        return Path(cache).expanduser()
    return Path.home() / ".cache" / "mnist_jax" / "mnist"


def _existing_dir(path: str, what: str) -> Path:
    result = Path(path).expanduser()
    if not result.is_dir():
        raise DataError(
            f"{what} {path!r} is not an existing directory; point it at a directory holding "
            f"the four MNIST .gz files"
        )
    return result


def resolve_data_dir(data_dir: str = "") -> Path:
    """Picks the IDX directory: `data_dir`, else $MNIST_DIR, else the download cache.

    A directory the user named is never silently replaced by another one: if it is missing, that
    is an error. Only the default cache is filled by downloading. An empty MNIST_DIR counts as
    unset.
    """
    if data_dir:
        return _existing_dir(str(data_dir), "data directory (config.data.dir)")
    if env_dir := os.environ.get("MNIST_DIR"):
        return _existing_dir(env_dir, "MNIST_DIR")
    cache = default_cache_dir()
    if not all((cache / name).is_file() for name, _ in FILES.values()):
        download_mnist(cache)
    return cache


def _fetch(url: str, dest: Path, name: str, sha256: str, timeout: float) -> None:
    """Downloads `url` to dest/name atomically: a temp file, verified, then renamed."""
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while chunk := resp.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise DataError(f"sha256 is {digest.hexdigest()}, expected {sha256}")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a shared cache must stay readable
        os.replace(tmp, dest / name)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download_mnist(dest: Path, mirrors: Sequence[str] = MIRRORS, timeout: float = 30) -> None:
    """Downloads the MNIST files missing from `dest`, trying each mirror in turn.

    Files are written under a temporary name and renamed only once their sha256 matches, so an
    interrupted or corrupt download never leaves a file that looks complete.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name, sha256 in FILES.values():
        if (dest / name).is_file():
            continue
        failures = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                _fetch(url, dest, name, sha256, timeout)
                break
            # URLError, HTTPError and timeouts are OSErrors; ValueError: a malformed mirror URL.
            except (OSError, http.client.HTTPException, ValueError, DataError) as e:
                failures.append(f"{url}: {e}")
        else:
            raise DataError(
                f"could not download {name} into {dest}; mirrors tried: "
                + "; ".join(failures or ["(none given)"])
                + ". Without network access, copy the four MNIST .gz files into a directory and "
                "set config.data.dir or MNIST_DIR to it"
            )


def load_idx(data_dir: str = "") -> tuple[Arrays, Arrays]:
    """(train, test) from the four IDX files, each verified against its sha256, then parsed."""
    directory = resolve_data_dir(data_dir)
    arrays = {}
    for key, (name, sha256) in FILES.items():
        verify_file(directory / name, sha256)
        arrays[key] = read_idx(directory / name)
    return (
        (arrays["train_images"], arrays["train_labels"].astype(np.int32)),
        (arrays["test_images"], arrays["test_labels"].astype(np.int32)),
    )


def _tfds_not_prepared(data_dir: str, error: Exception) -> DataError:
    where = data_dir or "the TFDS default data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
    flag = f" --data_dir={data_dir}" if data_dir else ""
    return DataError(
        f"TFDS dataset 'mnist' is not prepared as array_record in {where} ({error}). Preparing it "
        "needs TensorFlow once: `pip install tensorflow`, then "
        f"`tfds build mnist --file_format=array_record{flag}`; offline, add "
        "`--manual_dir=DIR` where DIR holds the four original files under their original names "
        f"({', '.join(name for name, _ in FILES.values())}), which TFDS then uses (after checking "
        "their checksums) instead of downloading. Or set config.data.source='idx' to read those "
        "files directly"
    )


def _records_to_arrays(records: Sequence[dict]) -> Arrays:
    # Per-record indexing: works for any random-access source (ArrayRecord, or a list in tests).
    examples = [records[i] for i in range(len(records))]
    images = np.stack([np.asarray(ex["image"], dtype=np.uint8) for ex in examples])
    labels = np.asarray([ex["label"] for ex in examples], dtype=np.int32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    return images, labels


def check_tfds_installed() -> None:
    """data.source='tfds' needs the optional extra; one line saying how to get it."""
    try:
        found = importlib.util.find_spec("tensorflow_datasets") is not None
    except ValueError:  # a module set to None in sys.modules: as good as absent
        found = False
    if not found:
        raise DataError(
            "data.source='tfds' needs tensorflow-datasets, an optional extra: pip install "
            "'mnist_jax[tfds]' (or use data.source='idx', the default)"
        )


def load_tfds(data_dir: str = "") -> tuple[Arrays, Arrays]:
    """(train, test) from a prepared TFDS `mnist` via random-access data sources.

    `download=False`: loading must never start a build or a network fetch behind the user's back;
    reading ArrayRecord files needs no TensorFlow.
    """
    check_tfds_installed()
    import tensorflow_datasets as tfds  # deferred: only this source needs it

    try:
        with _without_tfds_variant_notice():
            train, test = tfds.data_source(
                "mnist",
                split=["train", "test"],
                data_dir=data_dir or None,
                download=False,
                builder_kwargs={"file_format": "array_record"},
            )
    except (KeyError, ValueError, NotImplementedError, FileNotFoundError) as e:
        raise _tfds_not_prepared(data_dir, e) from e
    return _records_to_arrays(train), _records_to_arrays(test)


@contextlib.contextmanager
def _without_tfds_variant_notice() -> Iterator[None]:
    """TFDS warns 'Variant folder .../mnist/3.0.1 has no dataset_info.json' while it looks for a
    prepared dataset; an unprepared one then raises, and `_tfds_not_prepared` explains what to do.
    Only that record is dropped, and only during the lookup."""
    from absl import logging

    def keep(record: Any) -> bool:
        return not (
            "tensorflow_datasets" in record.pathname
            and str(record.msg).startswith("Variant folder %s has no")
        )

    logger = logging.get_absl_logger()
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)
