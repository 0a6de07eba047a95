"""Every configuration key, with its default. Other configs import this and override a few keys.

Select a config with `--config=configs/<name>.py` (from any directory, by path) and override any
key from the command line, e.g. `--config.optimizer.learning_rate=3e-4
--config.mlp.hidden_sizes=1024,1024`. Every config takes a variant after a colon:
`--config=configs/cnn.py:quick` (see VARIANTS). Once the package is installed the same files are
importable as `mnist_jax.configs.<name>`.
"""

from typing import Any

import ml_collections

from mnist_jax.core.errors import ConfigError

# Variant name -> the keys it overrides, applied after the config's own settings.
VARIANTS: dict[str, dict[str, Any]] = {
    "": {},
    "quick": {"num_epochs": 1, "data.train_fraction": 0.1},  # a smoke run: ~1 epoch of 5,400 images
}


def with_variant(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
    """`config` with the overrides of `variant` applied; a one-line error for unknown ones."""
    if variant not in VARIANTS:
        valid = ", ".join(repr(v) for v in VARIANTS if v)
        raise ConfigError(f"unknown config variant {variant!r}; valid: {valid} (or none)")
    for key, value in VARIANTS[variant].items():
        set_key(config, key, value)
    return config


def set_key(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    """config[a][b][c] = value for the dotted key 'a.b.c' (variants, studies, tests use it)."""
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = value


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    config.model = "cnn"  # registered: 'mlp', 'cnn', 'cnn_nnx', 'lenet5', 'resnet', 'hybrid'
    config.seed = 0  # initialisation, batch order and dropout are all derived from this
    config.prng_impl = "threefry2x32"  # jax.random PRNG of those streams, or 'rbg'/'unsafe_rbg'
    config.dtype = "float32"  # compute dtype of activations: 'float32' or 'bfloat16'

    config.data = ml_collections.ConfigDict()
    config.data.source = "idx"  # 'idx' (official gz IDX files) or 'tfds' (prepared TFDS mnist)
    config.data.dir = ""  # directory of the data; '' = $MNIST_DIR, else a download cache
    config.data.validation_fraction = 0.1  # held out of the 60k training images; 0 = none
    config.data.split_seed = 0  # fixes which images are held out, independently of `seed`
    config.data.train_fraction = 1.0  # stratified fraction of the training split that is used
    config.data.pca_components = 0  # >0: project inputs onto this many principal components
    # Training augmentation, on the device, keyed per example (data/augment.py); 0 = off.
    config.data.augment_shift = 0  # random whole-pixel translation by up to this many pixels
    config.data.augment_rotation = 0.0  # random rotation, degrees in [-r, r]
    config.data.augment_scale = 0.0  # random scale in [1 - s, 1 + s]
    config.data.augment_shear = 0.0  # random shear, degrees in [-h, h]
    config.data.augment_translate = 0.0  # random sub-pixel translation, px in [-t, t]
    config.data.augment_elastic_alpha = 0.0  # elastic distortion strength, px (Simard et al.: 34)
    config.data.augment_elastic_sigma = 4.0  # elastic field smoothness, px (Simard et al.: 4)
    config.data.augment_corruptions = ""  # e.g. 'gaussian_noise,contrast': data/corruptions.py's
    config.data.augment_corruption_prob = 0.0  # share of examples given one, at U(0, default)

    config.mlp = ml_collections.ConfigDict()
    config.mlp.hidden_sizes = (512, 512)  # width of each hidden layer
    config.mlp.activation = "relu"  # 'relu', 'gelu', 'tanh', 'sigmoid', 'silu', 'elu'
    config.mlp.dropout = 0.2  # dropout rate after each hidden layer
    config.mlp.input_norm = "dataset"  # 'per_image': each image standardised on its own first

    config.cnn = ml_collections.ConfigDict()
    config.cnn.channels = (32, 64)  # output channels of each conv block
    config.cnn.kernel_sizes = (5, 5)  # square kernel size of each conv block
    config.cnn.convs_per_block = 1  # conv layers in each block (the block's channels each)
    config.cnn.pool = "max"  # pooling after each block: 'max', 'avg' or 'none'
    config.cnn.padding = "SAME"  # 'SAME': a conv keeps the map's size; 'VALID': shrinks it by k-1
    config.cnn.input_norm = "dataset"  # 'per_image': each image standardised on its own first
    config.cnn.dense = (128,)  # widths of the dense layers after the conv stack
    config.cnn.activation = "relu"  # activation after every conv and dense layer
    config.cnn.dropout = 0.5  # dropout rate before each dense layer
    config.cnn.stem_patch = 1  # >1: b x b patches to channels first (28x28x1 -> 14x14x4 for 2)
    config.cnn.batch_norm = False  # BatchNorm after every convolution (before the activation)

    # The same network written in Flax NNX (models/cnn_nnx.py): the same keys as `cnn`.
    config.cnn_nnx = ml_collections.ConfigDict(config.cnn.to_dict())

    config.lenet5 = ml_collections.ConfigDict()
    config.lenet5.activation = "tanh"  # LeCun et al. 1998 use a scaled tanh
    config.lenet5.pool = "avg"  # subsampling layers: 'avg' (classic) or 'max'

    config.resnet = ml_collections.ConfigDict()
    config.resnet.stem_channels = 16  # channels of the 3x3 stem convolution
    config.resnet.stage_channels = (16, 32, 64)  # channels of each stage (28, 14, 7 px maps)
    config.resnet.blocks = (1, 1, 1)  # basic residual blocks per stage
    config.resnet.dropout = 0.0  # dropout rate before the output layer

    config.hybrid = ml_collections.ConfigDict()
    config.hybrid.channels = (4,)  # channels of each conv+pool layer, 0-2 of them; () = the MLP
    config.hybrid.kernel_size = 5  # square kernel of every conv layer ('SAME' padding)
    config.hybrid.hidden_sizes = (512, 512)  # the MLP head: width of each hidden layer
    config.hybrid.activation = "relu"  # activation after every conv and hidden layer
    config.hybrid.dropout = 0.2  # dropout rate after each hidden layer of the head

    # How convolutions and pooling are computed; never part of a run's identity (same function).
    config.layers = ml_collections.ConfigDict()
    config.layers.conv_impl = "auto"  # 'auto' (im2col in CPU train steps, else XLA's), or either
    config.layers.pool_impl = "auto"  # 'auto' (reshape on CPU, else reduce_window), or either

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"  # 'adam', 'adamw' or 'sgd'
    config.optimizer.learning_rate = 1e-3  # peak learning rate of the schedule
    config.optimizer.momentum = 0.9  # sgd momentum (0 = plain sgd); ignored by adam/adamw
    config.optimizer.nesterov = False  # sgd: Nesterov momentum
    config.optimizer.b1 = 0.9  # adam/adamw first-moment decay
    config.optimizer.b2 = 0.999  # adam/adamw second-moment decay
    config.optimizer.weight_decay = 0.0  # adamw: decoupled decay; adam/sgd: L2 added to the grads
    config.optimizer.l1 = 0.0  # L1 penalty l1 * sum|w| on weight matrices/kernels (not biases)
    config.optimizer.grad_clip_norm = 0.0  # clip the global gradient norm to this; 0 = off
    config.optimizer.ema_decay = 0.0  # >0: the model is an EMA of the weights, e.g. 0.999; 0 = off

    config.schedule = ml_collections.ConfigDict()
    config.schedule.name = "constant"  # 'constant', 'cosine', 'warmup_cosine' or 'onecycle'
    config.schedule.warmup_epochs = 1.0  # warmup_cosine: linear warmup length
    config.schedule.final_fraction = 0.0  # cosine/warmup_cosine: final lr as a fraction of peak
    config.schedule.onecycle_pct_start = 0.25  # onecycle: fraction of training spent rising

    config.label_smoothing = 0.0  # cross-entropy against (1-a) one-hot + a/10
    config.batch_size = 128  # global batch, split evenly over all devices of all processes
    config.microbatches = 1  # split each device's batch into k parts, gradients averaged
    config.eval_batch_size = 1000  # global eval batch; the last one is padded and masked
    config.num_epochs = 10  # maximum number of epochs
    config.steps_per_chunk = 0  # train steps per compiled scan (progress granularity); 0 = auto

    config.early_stopping = ml_collections.ConfigDict()
    config.early_stopping.patience = 0  # epochs without val-loss improvement; 0 = off
    config.early_stopping.min_delta = 0.0  # smallest val-loss decrease that counts

    config.parallel = ml_collections.ConfigDict()
    config.parallel.mode = "shard_map"  # jax.jit + jax.shard_map (JAX recommends it), or "pmap"
    config.parallel.reduction = "mean"  # 'mean' (pmean) or 'tree' (bitwise on any device count)
    config.parallel.tree_shards = 8  # 'tree': shards of each global batch; devices must divide it
    config.parallel.cpu_kernels = "stable"  # XLA:CPU 'stable' (thread-count independent), 'fast'
    # or 'auto' (stable with the tree reduction, else fast)

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.every_epochs = 1  # save every this many epochs (and always at the end)
    config.checkpoint.keep = 2  # latest checkpoints kept (each holds the best-by-val-loss weights)

    config.log_every_seconds = 5.0  # progress line (steps/s, ETA) at most this often
    # TensorBoard events in <workdir>/tensorboard (training/logbook.py):
    config.log_every_steps = 4  # a train loss/accuracy point per k steps (in-scan sums); 0 = none
    config.test_every_epochs = 1  # test metrics of the current weights every k epochs; 0 = off
    return with_variant(config, variant)
