"""Evaluation: the eval command, bench (every shipped model on the same data), detector-crop
bench, ablations and model cards."""
