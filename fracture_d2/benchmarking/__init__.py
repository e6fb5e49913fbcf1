"""Benchmarking like a paper: sweeps of configs x seeds x folds (local or SLURM through
submitit), run provenance, aggregation across runs, paired tests between configs, and
ensembles of runs' predictions (Weighted Boxes Fusion)."""
