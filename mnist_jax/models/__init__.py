"""Models: the registry and contract (registry.py), the layers they are built from (layers.py),
and one module per family. Importing this package registers every built-in model.

  mlp.py       the fully connected network ("ANN")
  cnn.py       convolution blocks with pooling, then dense layers
  cnn_nnx.py   the same network written in Flax NNX (nnx_layers.py: its layers)
  lenet.py     LeNet-5
  resnet.py    a small residual network with BatchNorm
  hybrid.py    k convolutional layers feeding an MLP head (k = 0: the MLP)
  projected.py a fixed input projection (PCA) in front of any model
"""

from mnist_jax.models import cnn, cnn_nnx, hybrid, lenet, mlp, resnet  # noqa: F401  (registers them)
from mnist_jax.models.projected import Projected, project_inputs
from mnist_jax.models.registry import (
    MODELS,
    NUM_CLASSES,
    check_contract,
    count_params,
    create_model,
    init_variables,
    register,
    split_variables,
    uses_convolutions,
)

__all__ = [
    "MODELS",
    "NUM_CLASSES",
    "Projected",
    "check_contract",
    "count_params",
    "create_model",
    "init_variables",
    "project_inputs",
    "register",
    "split_variables",
    "uses_convolutions",
]
