"""Where V comes from: the value-source protocol and its sources (a dataset column, a values file,
the value model), the values sidecar, the inference engine and torchrun scoring.
Importing this package does not import torch; only inference does."""
