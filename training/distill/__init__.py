"""Feature distillation from a frozen teacher: the distillation job (``python -m training distill``)."""
