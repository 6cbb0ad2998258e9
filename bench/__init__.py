"""Benchmark: graphrunner against a hand-written temporalio workflow, on one dev server.

Kept empty on purpose: the workflow sandbox re-imports this package for every workflow run
of the baseline, so it must stay free of imports.
"""
