"""Networks: backbones, the landmark network with its regression and heatmap heads, and the
landmark losses (the distillation loss is in training.distill)."""
