"""kpdesk training toolkit: data, augmentation, networks, losses, engine, distillation,
pruning, evaluation and export (PyTorch). May import kpdesk.vision; kpdesk never imports this."""
