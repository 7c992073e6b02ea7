"""Data path: label lists and formats (datasets), augmentation, the torch Dataset that makes
training targets (torchdata), and pseudo-labelling of unlabelled faces (pseudolabel)."""
