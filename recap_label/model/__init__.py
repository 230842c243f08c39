"""pistar's value model: parameters, Orbax checkpoints, inputs and the PyTorch network.

Import the submodules directly (`recap_label.model.network`, `.checkpoint`, `.preprocess`,
`.params`); this package imports nothing so that torch stays out of light CLI paths.
"""
