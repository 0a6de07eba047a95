"""Trained models put to use outside training: the draw-a-digit page (server.py, page.html),
image files classified (classify.py, behind `python -m mnist_jax.predict`) and the
`jax.export` artifact that runs with JAX alone (exported.py, behind `python -m mnist_jax.export`).
"""
