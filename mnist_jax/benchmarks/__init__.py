"""The speed benchmark's measurements (the library of `python -m mnist_jax.benchmark`; its
results and the machines they were measured on are in the repository's benchmarks/).

speed.py     training throughput, compile times, time to accuracy, FLOP/s, inference
markdown.py  the report as benchmark.md
"""
