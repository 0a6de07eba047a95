"""Evaluation: trained runs -> metrics, comparisons, report and figures.

runs.py        open a run directory and restore its verified best variables
runner.py      evaluate runs and compare them (the evaluate binary's library)
outputs.py     the output directory: checked first, reused if up to date, replaced as one unit
metrics.py     numpy metrics: confusion matrix, per-class report, ECE, McNemar's test
scores.py      the table of metrics comparison.json and report.md hold (one entry each)
comparison.py  groups runs into models (seeds -> statistics), compares pairs, ensembles
stats.py       t intervals and the seed-aware test of an accuracy difference
scoring.py     logits of many runs on many image sets, one compiled program per model and set
robustness.py  the test set under corruptions (generated once) and its comparison section
quantize.py    post-training int8 quantization (qwix) and its comparison section
inference.py   FLOPs, throughput and latency of the forward pass
report.py      report.md; plots.py the figures
"""
