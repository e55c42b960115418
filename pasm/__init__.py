"""PASM: Point Adversarial Self Mining for facial expression recognition."""

__version__ = "0.1.0"
