"""kpdesk training toolkit (PyTorch): ``data`` (the data path), ``nets`` (networks and landmark
losses), ``jobs`` (engine, train / export, checkpoints, ONNX), ``distill`` (distillation loss and
job), ``prune`` (pruning criterion, plan and job), ``evaluation`` (eval, bench, ablations, cards);
``cli`` parses and dispatches. May import kpdesk.vision and kpdesk.inference; kpdesk never imports this."""
