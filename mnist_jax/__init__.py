"""mnist_jax: MLP vs CNN on MNIST in JAX."""
