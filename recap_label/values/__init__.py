"""Where V comes from: the value-source protocol (types), its sources (a dataset column, a values
file, the value model) and the factory that picks one, the value cache (the sidecar and the
resumable parts), the inference engine and torchrun scoring.
Importing this package does not import torch; only inference does."""
