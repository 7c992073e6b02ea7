"""The robustness lab tab: sweeps of synthetic perturbations over a labelled folder, NME vs.
severity per model, the worst faces next to their labels (work runs in
``kpdesk.workers.robustness``)."""
