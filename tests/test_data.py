"""Tests of mnist_jax.data (sources, splits, preprocessing) on the real MNIST files ($MNIST_DIR).

Downloads are tested against local http.server mirrors on 127.0.0.1, and the TFDS source with
`tfds.testing.mock_data`, so nothing here needs network access or TensorFlow.
"""

import contextlib
import functools
import gzip
import hashlib
import http.server
import math
import os
import re
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from mnist_jax.configs import default
from mnist_jax.core.errors import ConfigError, DataError
from mnist_jax.data import dataset, preprocess, sources
from mnist_jax.training import validation

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
NAMES = [name for name, _ in sources.FILES.values()]
LABELS_NAME, LABELS_SHA = sources.FILES["train_labels"]


@pytest.fixture(scope="module")
def mnist_dir() -> Path:
    if not os.environ.get("MNIST_DIR"):
        pytest.skip("MNIST_DIR is not set; point it at a directory with the four MNIST .gz files")
    return Path(os.environ["MNIST_DIR"])


@pytest.fixture(scope="module")
def splits(mnist_dir: Path) -> tuple[dataset.Split, dataset.Split]:
    return dataset.load_mnist(str(mnist_dir))


def _link_files(src: Path, dest: Path, names: list[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        (dest / name).symlink_to(src / name)


def _flip_byte(src: Path, dest: Path, offset: int = 100) -> None:
    data = bytearray(src.read_bytes())
    data[offset] ^= 0xFF
    dest.write_bytes(bytes(data))


def _indexed_split(n: int) -> dataset.Split:
    """Images that carry their own index in two pixels, to check which examples went where."""
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    return dataset.Split(images, (np.arange(n) % 10).astype(np.int32))


def _config(**overrides) -> ml_collections.ConfigDict:
    values = {"source": "idx", "dir": "", "validation_fraction": 0.1, "split_seed": 0}
    return ml_collections.ConfigDict({**values, **overrides})


def _ids(split: dataset.Split) -> np.ndarray:
    return split.images[:, 0, 0].astype(int) + 256 * split.images[:, 0, 1].astype(int)


# --- The real files ----------------------------------------------------------------------------


def test_real_files_parse(splits: tuple[dataset.Split, dataset.Split]) -> None:
    train, test = splits
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 28, 28) and test.images.dtype == np.uint8
    assert train.labels.dtype == test.labels.dtype == np.int32
    assert len(train) == 60000 and len(test) == 10000
    assert train.labels[:3].tolist() == [5, 0, 4] and test.labels[:3].tolist() == [7, 2, 1]
    assert np.bincount(train.labels).tolist() == TRAIN_COUNTS
    assert np.bincount(test.labels).tolist() == TEST_COUNTS
    assert train.images.min() == 0 and train.images.max() == 255


def test_read_idx_raw(mnist_dir: Path) -> None:
    labels = sources.read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.dtype == np.uint8 and labels.max() == 9
    images = sources.read_idx(str(mnist_dir / "t10k-images-idx3-ubyte.gz"))
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8


def test_files_table_matches_sha256sums(mnist_dir: Path) -> None:
    sums = mnist_dir / "SHA256SUMS"
    if not sums.exists():
        pytest.skip(f"no SHA256SUMS in {mnist_dir}")
    published = {line.split()[1]: line.split()[0] for line in sums.read_text().splitlines()}
    assert {name: sha for name, sha in sources.FILES.values()} == published


# --- Corrupt, truncated and missing files ------------------------------------------------------


def test_checksum_mismatch_names_file_and_hashes(mnist_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / LABELS_NAME
    _flip_byte(mnist_dir / LABELS_NAME, bad)
    actual = hashlib.sha256(bad.read_bytes()).hexdigest()
    with pytest.raises(DataError, match=LABELS_NAME) as info:
        sources.verify_file(bad, LABELS_SHA)
    assert LABELS_SHA in str(info.value) and actual in str(info.value)
    sources.verify_file(mnist_dir / LABELS_NAME, LABELS_SHA)  # the original passes


def test_load_idx_rejects_corrupt_file(mnist_dir: Path, tmp_path: Path) -> None:
    _link_files(mnist_dir, tmp_path, [n for n in NAMES if n != LABELS_NAME])
    _flip_byte(mnist_dir / LABELS_NAME, tmp_path / LABELS_NAME)
    with pytest.raises(DataError, match=LABELS_NAME):
        dataset.load_mnist(str(tmp_path))


def _raw_labels(mnist_dir: Path) -> bytes:
    return gzip.decompress((mnist_dir / LABELS_NAME).read_bytes())


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda raw, gz: gzip.compress(raw[:-10]), "60008"),  # payload shorter than the header
        (lambda raw, gz: gzip.compress(raw + b"\0"), "60008"),  # payload longer than the header
        (lambda raw, gz: gz[: len(gz) // 2], "gzip"),  # gzip stream cut in the middle
        (lambda raw, gz: b"not a gzip file at all", "gzip"),
        (lambda raw, gz: gzip.compress(b"\0\0\x04\xd2" + raw[4:]), "2051"),  # bad magic
        (lambda raw, gz: gzip.compress(raw[:6]), "too short"),
        (lambda raw, gz: gzip.compress(b"\0\0\x08\x03" + b"\0" * 6), "header"),
    ],
    ids=["short-payload", "long-payload", "cut-stream", "not-gzip", "magic", "tiny", "header"],
)
def test_read_idx_rejects_garbled(mnist_dir: Path, tmp_path: Path, make, match: str) -> None:
    path = tmp_path / "garbled-idx1-ubyte.gz"
    path.write_bytes(make(_raw_labels(mnist_dir), (mnist_dir / LABELS_NAME).read_bytes()))
    with pytest.raises(DataError, match=match) as info:
        sources.read_idx(path)
    assert str(path) in str(info.value)


def _idx(magic: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)
    return gzip.compress(header + payload)


@pytest.mark.parametrize("bad", [10, 255])
def test_read_idx_rejects_labels_outside_0_to_9(mnist_dir: Path, tmp_path: Path, bad: int) -> None:
    """A label file that is well-formed but not MNIST's (checksums are not checked here)."""
    raw = bytearray(_raw_labels(mnist_dir))
    raw[8 + 1234] = bad  # header (8 bytes), then one byte per label
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=rf"label {bad} \(first bad one at index 1234\)") as info:
        sources.read_idx(path)
    assert str(path) in str(info.value) and "0..9" in str(info.value)


def test_read_idx_rejects_a_huge_header_without_allocating_it(tmp_path: Path) -> None:
    """A header declaring 2^32-1 images of 28x28 (3.4 TB) over a 100-image payload fails from
    what the file holds, with the exact declared size (no overflow), and without a 3.4 TB
    buffer (which would fail with MemoryError, not a DataError)."""
    path = tmp_path / "huge-idx3-ubyte.gz"
    path.write_bytes(_idx(2051, (2**32 - 1, 28, 28), bytes(100 * 784)))
    declared = 16 + (2**32 - 1) * 784
    with pytest.raises(DataError, match=rf"{16 + 100 * 784} bytes after decompression") as info:
        sources.read_idx(path)
    assert f"exactly {declared} bytes" in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("shape", [(10, 32, 32), (10, 28, 27), (10, 0, 28)])
def test_read_idx_rejects_images_that_are_not_28x28(tmp_path: Path, shape) -> None:
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(_idx(2051, shape, bytes(math.prod(shape))))
    with pytest.raises(DataError, match=rf"{shape[1]}x{shape[2]} pixels; MNIST images are 28x28"):
        sources.read_idx(path)


def test_read_idx_accepts_a_small_well_formed_file(tmp_path: Path) -> None:
    path = tmp_path / "small-idx1-ubyte.gz"
    path.write_bytes(_idx(2049, (5,), bytes([0, 9, 3, 3, 7])))
    labels = sources.read_idx(path)
    assert labels.tolist() == [0, 9, 3, 3, 7] and not labels.flags.writeable


def test_missing_file_names_it_and_says_how_to_provide(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        sources.verify_file(tmp_path / LABELS_NAME, LABELS_SHA)
    message = str(info.value)
    for part in (LABELS_NAME, str(tmp_path), "MNIST_DIR", "config.data.dir", "download"):
        assert part in message
    with pytest.raises(DataError, match="does not exist"):
        sources.read_idx(tmp_path / LABELS_NAME)
    with pytest.raises(DataError, match=re.escape(sources.FILES["train_images"][0])):
        dataset.load_mnist(str(tmp_path))  # an existing but empty directory


# --- Where the data comes from -----------------------------------------------------------------


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("download_mnist must not be called here")

    monkeypatch.setattr(sources, "download_mnist", fail)


def test_missing_directories_are_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mnist_dir: Path, no_download: None
) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("MNIST_DIR", str(mnist_dir))
    with pytest.raises(DataError, match="nowhere"):  # no fallback to the valid MNIST_DIR
        sources.resolve_data_dir(str(missing))
    monkeypatch.setenv("MNIST_DIR", str(missing))
    with pytest.raises(DataError, match=r"MNIST_DIR.*nowhere"):  # no fallback to the cache
        sources.resolve_data_dir()
    with pytest.raises(DataError, match="nowhere"):
        dataset.load_mnist()


def test_explicit_dir_beats_mnist_dir_beats_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mnist_dir: Path, no_download: None
) -> None:
    monkeypatch.setenv("MNIST_DIR", str(tmp_path))
    assert sources.resolve_data_dir(str(mnist_dir)) == mnist_dir
    monkeypatch.setenv("MNIST_DIR", str(mnist_dir))
    assert sources.resolve_data_dir() == mnist_dir
    assert sources.resolve_data_dir("") == mnist_dir


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MNIST_JAX_CACHE", str(tmp_path / "c"))
    assert sources.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MNIST_JAX_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sources.default_cache_dir() == tmp_path / ".cache" / "mnist_jax" / "mnist"


def test_cache_is_downloaded_only_when_incomplete(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mnist_dir: Path
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.delenv("MNIST_DIR", raising=False)
    monkeypatch.setenv("MNIST_JAX_CACHE", str(cache))
    calls = []

    def fake_download(dest: Path, *args, **kwargs) -> None:
        calls.append(dest)
        _link_files(mnist_dir, dest, NAMES)

    monkeypatch.setattr(sources, "download_mnist", fake_download)
    assert sources.resolve_data_dir() == cache and calls == [cache]
    assert sources.resolve_data_dir() == cache and calls == [cache]  # complete now: no second call
    assert len(dataset.load_mnist()[1]) == 10000


# --- Downloads from local mirrors --------------------------------------------------------------


@contextlib.contextmanager
def _mirror(directory: Path, requests: list[str]) -> Iterator[str]:
    """Serves `directory` on 127.0.0.1 and records the requested paths."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path.lstrip("/"))
            super().do_GET()

        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Handler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mnist/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def local_mirrors(mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A good mirror and a bad one (one corrupt file, one truncated file, the rest missing)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    _link_files(mnist_dir, tmp_path / "good" / "mnist", NAMES)
    bad = tmp_path / "bad" / "mnist"
    bad.mkdir(parents=True)
    _flip_byte(mnist_dir / LABELS_NAME, bad / LABELS_NAME)
    test_labels = (mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(test_labels[:1000])
    good_requests: list[str] = []
    bad_requests: list[str] = []
    with (
        _mirror(tmp_path / "good", good_requests) as good_url,
        _mirror(tmp_path / "bad", bad_requests) as bad_url,
    ):
        yield good_url, bad_url, good_requests, bad_requests


def test_download_falls_back_and_leaves_nothing_partial(local_mirrors, tmp_path: Path) -> None:
    good_url, bad_url, good_requests, bad_requests = local_mirrors
    dest = tmp_path / "dest"
    sources.download_mnist(dest, mirrors=[bad_url, good_url], timeout=10)
    assert sorted(os.listdir(dest)) == sorted(NAMES)  # no temp files left
    for name, sha in sources.FILES.values():
        sources.verify_file(dest / name, sha)
    assert sorted(bad_requests) == sorted(f"mnist/{n}" for n in NAMES)  # each tried first
    assert sorted(good_requests) == sorted(f"mnist/{n}" for n in NAMES)
    sources.download_mnist(dest, mirrors=[bad_url, good_url])  # complete: fetches nothing
    assert len(good_requests) == 4


def test_download_fetches_only_missing_files(
    local_mirrors, mnist_dir: Path, tmp_path: Path
) -> None:
    good_url, _, good_requests, _ = local_mirrors
    dest = tmp_path / "dest"
    _link_files(mnist_dir, dest, NAMES[:3])
    sources.download_mnist(dest, mirrors=[good_url])
    assert good_requests == [f"mnist/{NAMES[3]}"]
    sources.verify_file(dest / NAMES[3], sources.FILES["test_labels"][1])


def test_failed_download_lists_mirrors_and_leaves_no_file(local_mirrors, tmp_path: Path) -> None:
    _, bad_url, _, _ = local_mirrors
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/mnist/"
    dest = tmp_path / "dest"
    with pytest.raises(DataError) as info:
        sources.download_mnist(dest, mirrors=[bad_url, closed], timeout=5)
    message = str(info.value)
    assert bad_url in message and closed in message and "MNIST_DIR" in message
    assert os.listdir(dest) == []


# --- TFDS source (mocked: no TensorFlow, no prepared data needed) -----------------------------


def test_tfds_source_with_mock_data() -> None:
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        train, test = dataset.load_mnist("", "tfds")
    for split in (train, test):
        assert split.images.shape == (12, 28, 28) and split.images.dtype == np.uint8
        assert split.labels.dtype == np.int32
        assert split.labels.min() >= 0 and split.labels.max() < 10


def test_tfds_source_keeps_records_in_order() -> None:
    def fake_source(n: int, offset: int) -> list[dict]:
        return [
            {"image": np.full((28, 28, 1), offset + i, np.uint8), "label": np.int64(i % 10)}
            for i in range(n)
        ]

    def as_data_source(self, split, **kwargs):
        sizes = {"train": (30, 0), "test": (7, 100)}
        return [fake_source(*sizes[s]) for s in split]

    with tfds.testing.mock_data(as_data_source_fn=as_data_source):
        train, test = dataset.load_mnist("", "tfds")
    assert train.images[:, 5, 5].tolist() == list(range(30))
    assert test.images[:, 0, 0].tolist() == list(range(100, 107))
    assert test.labels.tolist() == [0, 1, 2, 3, 4, 5, 6]


def test_tfds_not_prepared_explains_how(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        dataset.load_mnist(str(tmp_path), "tfds")
    message = str(info.value)
    for part in ("tfds build mnist", "--file_format=array_record", "--manual_dir", str(tmp_path)):
        assert part in message


def test_tfds_is_an_optional_extra_named_when_missing(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if not installed
    with pytest.raises(DataError, match=r"needs tensorflow-datasets, an optional extra: pip "
                       r"install 'mnist_jax\[tfds\]'"):  # fmt: skip
        dataset.load_mnist("", "tfds")
    config = default.get_config()
    config.data.source = "tfds"
    with pytest.raises(DataError, match="optional extra"):  # before any work
        validation.validate(config)


def test_load_dataset_tfds_source() -> None:
    config = _config(source="tfds", dir="", validation_fraction=0.25)
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        data = dataset.load_dataset(config)
    assert (len(data.train), len(data.validation), len(data.test)) == (9, 3, 12)


# --- Splits ------------------------------------------------------------------------------------


def test_split_validation_sizes_and_determinism(
    splits: tuple[dataset.Split, dataset.Split],
) -> None:
    train, val = dataset.split_validation(splits[0], 0.1, seed=0)
    assert (len(train), len(val)) == (54000, 6000)
    np.random.seed(123)  # global numpy state must not matter
    train2, val2 = dataset.split_validation(splits[0], 0.1, seed=0)
    np.testing.assert_array_equal(val.images, val2.images)
    np.testing.assert_array_equal(train.labels, train2.labels)
    _, val3 = dataset.split_validation(splits[0], 0.1, seed=1)
    assert not np.array_equal(val.images, val3.images)


def test_split_validation_is_a_disjoint_ordered_partition() -> None:
    full = _indexed_split(1000)
    train, val = dataset.split_validation(full, 0.2, seed=3)
    train_ids, val_ids = _ids(train), _ids(val)
    assert len(val_ids) == 200 and not set(train_ids) & set(val_ids)
    assert sorted([*train_ids, *val_ids]) == list(range(1000))
    assert np.all(np.diff(train_ids) > 0) and np.all(np.diff(val_ids) > 0)
    np.testing.assert_array_equal(train.labels, train_ids % 10)  # labels follow their images


def test_split_validation_zero_and_bad_fractions() -> None:
    full = _indexed_split(100)
    train, val = dataset.split_validation(full, 0.0)
    assert train is full and val is None
    for bad in (-0.1, 1.0, 1.5, math.nan, "0.1", True):
        with pytest.raises(ConfigError, match="validation_fraction"):
            dataset.split_validation(full, bad)
    with pytest.raises(ConfigError, match="split_seed"):
        dataset.split_validation(full, 0.1, seed=-1)


def test_subsample_is_stratified_and_deterministic(
    splits: tuple[dataset.Split, dataset.Split],
) -> None:
    train = splits[0]
    small = dataset.subsample(train, 0.1, seed=0)
    assert np.bincount(small.labels).tolist() == [round(c * 0.1) for c in TRAIN_COUNTS]
    again = dataset.subsample(train, 0.1, seed=0)
    np.testing.assert_array_equal(small.images, again.images)
    other = dataset.subsample(train, 0.1, seed=1)
    assert not np.array_equal(small.images, other.images)
    assert dataset.subsample(train, 1.0) is train
    assert np.bincount(dataset.subsample(train, 1e-6).labels).tolist() == [1] * 10


def test_subsample_keeps_a_subset_and_rejects_bad_fractions() -> None:
    full = _indexed_split(1000)
    part = dataset.subsample(full, 0.3, seed=5)
    ids = _ids(part)
    assert len(ids) == 300 and len(set(ids)) == 300 and np.all(np.diff(ids) > 0)
    np.testing.assert_array_equal(part.labels, ids % 10)
    for bad in (0.0, -0.5, 1.5, math.nan):
        with pytest.raises(ConfigError, match="train_fraction"):
            dataset.subsample(full, bad)


# --- load_dataset ------------------------------------------------------------------------------


def test_load_dataset_idx(mnist_dir: Path, splits: tuple[dataset.Split, dataset.Split]) -> None:
    data = dataset.load_dataset(_config(dir=str(mnist_dir), train_fraction=0.5))
    _, expected_val = dataset.split_validation(splits[0], 0.1, seed=0)
    np.testing.assert_array_equal(data.validation.labels, expected_val.labels)
    assert abs(len(data.train) - 27000) <= 10
    np.testing.assert_array_equal(data.test.images, splits[1].images)  # test set untouched
    full = dataset.load_dataset(_config(dir=str(mnist_dir), validation_fraction=0.0))
    assert full.validation is None and len(full.train) == 60000  # train_fraction defaults to 1


def test_load_dataset_rejects_bad_config_before_loading(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere")  # loading would raise DataError
    with pytest.raises(ConfigError, match=r"'csv'.*'idx', 'tfds'"):
        dataset.load_dataset(_config(source="csv", dir=missing))
    with pytest.raises(ConfigError, match="train_fraction=0"):
        dataset.load_dataset(_config(dir=missing, train_fraction=0))
    with pytest.raises(ConfigError, match="validation_fraction=1"):
        dataset.load_dataset(_config(dir=missing, validation_fraction=1))
    with pytest.raises(ConfigError, match="split_seed"):
        dataset.load_dataset(ml_collections.ConfigDict({"source": "idx", "dir": ""}))


# --- normalize ---------------------------------------------------------------------------------


def test_normalize_standardises_the_train_set(splits: tuple[dataset.Split, dataset.Split]) -> None:
    x = np.asarray(preprocess.normalize(splits[0].images))
    assert x.shape == (60000, 28, 28, 1) and x.dtype == np.float32
    assert abs(x.mean(dtype=np.float64)) < 1e-3
    assert abs(x.std(dtype=np.float64) - 1) < 1e-3


def test_normalize_numpy_jax_and_jit_agree(splits: tuple[dataset.Split, dataset.Split]) -> None:
    images = splits[1].images[:16]
    expected = ((images / 255.0 - preprocess.MNIST_MEAN) / preprocess.MNIST_STD)[..., None]
    for out in (
        preprocess.normalize(images),
        preprocess.normalize(jax.numpy.asarray(images)),
        jax.jit(preprocess.normalize)(images),
    ):
        np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)
    assert preprocess.normalize(images[0]).shape == (28, 28, 1)
    with pytest.raises(ValueError, match="uint8"):
        preprocess.normalize(images.astype(np.float32))


def test_split_rejects_mismatched_arrays() -> None:
    with pytest.raises(DataError, match="labels"):
        dataset.Split(np.zeros((3, 28, 28), np.uint8), np.zeros(2, np.int32))
    with pytest.raises(DataError, match="28, 28"):
        dataset.Split(np.zeros((3, 28, 27), np.uint8), np.zeros(3, np.int32))
