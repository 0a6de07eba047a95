"""Evaluation: trained runs -> metrics, comparisons, report and figures.

runs.py        open a run directory and restore its verified best variables
runner.py      evaluate runs and compare them (the evaluate binary's library)
metrics.py     numpy metrics: confusion matrix, per-class report, ECE, McNemar's test
comparison.py  groups runs into models (seeds -> statistics), compares pairs of models
inference.py   FLOPs, throughput and latency of the forward pass
report.py      report.md; plots.py the figures
speed.py       the training-speed benchmark's measurements
"""
