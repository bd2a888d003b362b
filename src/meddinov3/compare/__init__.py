"""The paper's Table 2 comparison on any nnU-Net dataset: train (or reuse), evaluate, tabulate, plot.

`run_comparison` (also `meddinov3 compare`) drives it; `table.py` and `plot.py` only read
evaluation summaries, so they work on finished evaluations too.
"""
