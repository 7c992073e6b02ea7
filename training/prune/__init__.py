"""Layer-wise structured filter pruning: the pruning job (``python -m training prune``)."""
