"""Running jobs: the training engine (loop, cancel, errors), the train and export commands,
checkpoints, ONNX export and import, and ship (promote a run's model into models/)."""
