"""Launching runs (python -m mnist_jax.launch): commands built as data, and a process supervisor."""
