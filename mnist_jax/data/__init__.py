"""Data: host-side sources and splits (numpy), device-side preprocessing and transforms (jnp).

sources.py     the official IDX files (checksums, download) and TFDS, as numpy arrays
dataset.py     train / validation / test splits of a run, subsampling; PCA fit (pca.py)
preprocess.py  uint8 images -> normalised float inputs, on the device
augment.py     training augmentation on the device (shifts, affine, elastic), keyed per example
corruptions.py MNIST-C style corruptions for robustness evaluation (filters.py, patterns.py)
images.py      image files (PNG/JPEG) brought to MNIST's form, for predict and serve
external.py    extra labelled test sets from IDX or .npz files, validated (evaluate --test_sets)
"""

from mnist_jax.data.dataset import NUM_CLASSES, Dataset, Split, load_dataset, load_mnist
from mnist_jax.data.preprocess import IMAGE_SHAPE, normalize

__all__ = [
    "IMAGE_SHAPE",
    "NUM_CLASSES",
    "Dataset",
    "Split",
    "load_dataset",
    "load_mnist",
    "normalize",
]
