"""MNIST from disk into host arrays: sources, integrity checks, splits and normalisation.

Everything here runs once per run, before training, and returns plain numpy arrays; batching and
shuffling happen on the device (see train.py), so this module only has to be correct and quick.
Two sources give the same arrays: the four official gzip IDX files (verified by sha256, no extra
dependencies) and a prepared TFDS `mnist` dataset (for setups that already keep data in TFDS).
Nothing is cached to disk except the IDX downloads themselves.
"""

import dataclasses
import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mnist_jax import pca
from mnist_jax.errors import ConfigError, DataError

# Statistics of the 60k training images in [0, 1]; the usual published values, used so that
# inputs are roughly zero-mean, unit-variance whatever subset a study trains on.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

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
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10

_IDX_MAGIC = {2051: "images", 2049: "labels"}  # 0x0803 / 0x0801: unsigned bytes, 3 / 1 dims
# Separate random streams, so that the held-out images do not depend on the subsample and vice
# versa even when both use the same seed.
_VALIDATION_STREAM = 0
_SUBSAMPLE_STREAM = 1
_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Split:
    """One split as host arrays: images (N, 28, 28) uint8 and labels (N,) int32.

    Images stay uint8 (47 MB for the training set instead of 188 MB as float32) until `normalize`
    runs on the device.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        # Catch mismatched or mis-shaped arrays here rather than as a shape error deep in a
        # compiled step.
        if self.images.ndim != 3 or self.images.shape[1:] != IMAGE_SHAPE:
            raise DataError(f"images have shape {self.images.shape}, expected (N, 28, 28)")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise DataError(
                f"labels have shape {self.labels.shape}, expected ({len(self.images)},) "
                "to match the images"
            )

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The splits a run uses; `validation` is None when validation_fraction == 0.

    `projection` is the PCA fitted on `train` when data.pca_components > 0 (applied by the model,
    see models.project_inputs), else None.
    """

    train: Split
    validation: Split | None
    test: Split
    projection: pca.Projection | None = None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parses one gzip-compressed IDX file into a uint8 array.

    The header is checked against the payload byte for byte, so a truncated or garbled file fails
    here with a message naming it rather than as a silently short dataset.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"{path} is not a complete gzip file ({e}); expected a gzip-compressed IDX file, "
            "delete it and provide the original"
        ) from e
    if len(data) < 8:
        raise DataError(
            f"{path}: {len(data)} bytes after decompression, too short for an IDX header"
        )
    magic = int.from_bytes(data[:4], "big")
    if magic not in _IDX_MAGIC:
        raise DataError(
            f"{path}: IDX magic number {magic}, expected 2051 (images) or 2049 (labels)"
        )
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{path}: truncated IDX header ({len(data)} of {header_len} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header_len + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(
            f"{path}: {len(data)} bytes after decompression, but its header declares "
            f"{_IDX_MAGIC[magic]} of shape {shape}, i.e. exactly {expected} bytes; "
            "the file is truncated or corrupt"
        )
    # A read-only view of the decompressed bytes: no copy.
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)


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


def load_idx(data_dir: str = "") -> tuple[Split, Split]:
    """(train, test) from the four IDX files, each verified against its sha256, then parsed."""
    directory = resolve_data_dir(data_dir)
    arrays = {}
    for key, (name, sha256) in FILES.items():
        verify_file(directory / name, sha256)
        arrays[key] = read_idx(directory / name)
    return (
        Split(arrays["train_images"], arrays["train_labels"].astype(np.int32)),
        Split(arrays["test_images"], arrays["test_labels"].astype(np.int32)),
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


def _records_to_split(records: Sequence[dict]) -> Split:
    # Per-record indexing: works for any random-access source (ArrayRecord, or a list in tests).
    examples = [records[i] for i in range(len(records))]
    images = np.stack([np.asarray(ex["image"], dtype=np.uint8) for ex in examples])
    labels = np.asarray([ex["label"] for ex in examples], dtype=np.int32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    return Split(images, labels)


def load_tfds(data_dir: str = "") -> tuple[Split, Split]:
    """(train, test) from a prepared TFDS `mnist` via random-access data sources.

    `download=False`: loading must never start a build or a network fetch behind the user's back;
    reading ArrayRecord files needs no TensorFlow.
    """
    import tensorflow_datasets as tfds  # deferred: only this source needs it

    try:
        train, test = tfds.data_source(
            "mnist",
            split=["train", "test"],
            data_dir=data_dir or None,
            download=False,
            builder_kwargs={"file_format": "array_record"},
        )
    except (KeyError, ValueError, NotImplementedError, FileNotFoundError) as e:
        raise _tfds_not_prepared(data_dir, e) from e
    return _records_to_split(train), _records_to_split(test)


def _check_fraction(name: str, value: float, *, zero_ok: bool, one_ok: bool) -> None:
    is_number = isinstance(value, int | float | np.integer | np.floating)
    if not is_number or isinstance(value, bool):
        in_range = False
    else:
        in_range = (value >= 0 if zero_ok else value > 0) and (value <= 1 if one_ok else value < 1)
    if not in_range:
        valid = ("[0, " if zero_ok else "(0, ") + ("1]" if one_ok else "1)")
        raise ConfigError(f"{name}={value!r} is not a fraction in {valid}")


def _check_seed(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ConfigError(f"{name}={value!r} is not a non-negative integer")


def _take(split: Split, indices: np.ndarray) -> Split:
    return Split(split.images[indices], split.labels[indices])


def split_validation(train: Split, fraction: float, seed: int = 0) -> tuple[Split, Split | None]:
    """Holds out `fraction` of the training split as validation: (train, validation).

    The held-out set is a function of (fraction, seed) alone, so it stays fixed across model
    seeds, device counts and data-amount ablations. Both parts keep the original order.
    """
    _check_fraction("validation_fraction", fraction, zero_ok=True, one_ok=False)
    _check_seed("split_seed", seed)
    if fraction == 0:
        return train, None
    n_val = max(1, round(len(train) * fraction))
    if n_val >= len(train):
        raise ConfigError(
            f"validation_fraction={fraction!r} of {len(train)} examples leaves none for training"
        )
    perm = np.random.default_rng([seed, _VALIDATION_STREAM]).permutation(len(train))
    return _take(train, np.sort(perm[n_val:])), _take(train, np.sort(perm[:n_val]))


def subsample(split: Split, fraction: float, seed: int = 0) -> Split:
    """Keeps `fraction` of each class (at least one example per class), for data-amount studies.

    Stratified so that small fractions keep the class balance of the full split; deterministic in
    (fraction, seed). Per-class rounding means the total can differ from fraction * N by a few.
    """
    _check_fraction("train_fraction", fraction, zero_ok=False, one_ok=True)
    _check_seed("split_seed", seed)
    if fraction == 1:
        return split
    rng = np.random.default_rng([seed, _SUBSAMPLE_STREAM])
    keep = []
    for label in np.unique(split.labels):
        members = np.flatnonzero(split.labels == label)
        count = max(1, round(len(members) * fraction))
        keep.append(rng.permutation(members)[:count])
    return _take(split, np.sort(np.concatenate(keep)))


_LOADERS: dict[str, Callable[[str], tuple[Split, Split]]] = {"idx": load_idx, "tfds": load_tfds}


def load_dataset(config: ml_collections.ConfigDict) -> Dataset:
    """Builds the run's splits from the `data` config; the test set is always all 10k images.

    Validation is split off first, then `train_fraction` is applied to what remains, so the
    validation set is the same for every data-amount ablation. A PCA projection, if asked for, is
    fitted on that final training split only.
    """
    try:
        source, data_dir = config.source, config.dir
        validation_fraction, split_seed = config.validation_fraction, config.split_seed
    except (AttributeError, KeyError) as e:
        raise ConfigError(
            f"data config is missing a key ({e}); needed: source, dir, validation_fraction, "
            "split_seed (and optionally train_fraction)"
        ) from None
    train_fraction = config.get("train_fraction", 1.0)
    pca_components = config.get("pca_components", 0)
    if source not in _LOADERS:
        raise ConfigError(
            f"config.data.source={source!r} is not one of {', '.join(map(repr, SOURCES))}"
        )
    # Fail on bad values before spending time on loading.
    _check_fraction("validation_fraction", validation_fraction, zero_ok=True, one_ok=False)
    _check_fraction("train_fraction", train_fraction, zero_ok=False, one_ok=True)
    _check_seed("split_seed", split_seed)
    pca.check_components(pca_components)

    train, test = _LOADERS[source](data_dir)
    train, validation = split_validation(train, validation_fraction, split_seed)
    train = subsample(train, train_fraction, split_seed)
    projection = pca.fit(train.images, pca_components) if pca_components else None
    return Dataset(train=train, validation=validation, test=test, projection=projection)


def normalize(images: np.ndarray | jax.Array) -> jax.Array:
    """uint8 (..., 28, 28) -> float32 (..., 28, 28, 1), standardised with the MNIST statistics.

    Always jnp, so it runs on the device inside jitted steps (the uint8 arrays are what live in
    device memory) and also accepts numpy input. The trailing channel axis is what Flax's Conv
    expects; MLPs flatten it away.
    """
    images = jnp.asarray(images)
    if images.dtype != jnp.uint8 or images.shape[-2:] != IMAGE_SHAPE:
        raise ValueError(
            f"normalize expects uint8 images of shape (..., 28, 28), got {images.dtype} "
            f"{images.shape}"
        )
    x = images.astype(jnp.float32) / 255.0
    return ((x - MNIST_MEAN) / MNIST_STD)[..., None]


def random_shift(images: jax.Array, keys: jax.Array, max_shift: int) -> jax.Array:
    """Translate each uint8 image by up to `max_shift` pixels in x and y, filling with background.

    One key per image, so the augmentation of an example depends on its key alone (not on the
    batch it shares a device with). Runs on the device inside the train step.
    """
    if max_shift <= 0:
        return images
    size = images.shape[-1]
    padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift)))

    def shift_one(image: jax.Array, key: jax.Array) -> jax.Array:
        dy, dx = jax.random.randint(key, (2,), 0, 2 * max_shift + 1)
        return jax.lax.dynamic_slice(image, (dy, dx), (size, size))

    return jax.vmap(shift_one)(padded, keys)
