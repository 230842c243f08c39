"""recap-label: Stage 5 of RECAP (pi*0.6) — advantage labels for LeRobot datasets."""

__version__ = "0.1.0"
