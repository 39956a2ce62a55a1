"""Training: the config (in sections), the freeze schedule, the recipe that runs it, callbacks,
distribution strategies and per-epoch checkpoints."""
