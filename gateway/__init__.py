"""modelgate: a model deployment and inference-serving gateway."""

__version__ = "0.1.0"
