"""pistar's value model in PyTorch: architecture, parameter layout, Orbax checkpoint reading,
prompt tokens and image letterbox. Imports torch (network.py) only where the model runs."""
