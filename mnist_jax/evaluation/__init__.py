"""Evaluation of trained models: metrics, statistics over seeds, comparisons, reports."""
