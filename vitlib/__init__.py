"""vitlib: the Vision Transformer of d2l.ai's "Transformers for Vision", in PyTorch and JAX.

`vitlib.torch` and `vitlib.jax` hold the twin models and training loops; the framework-free
parts (config, data, plots, widgets, cost model) live here and speak NumPy only.
"""

from vitlib.config import ViTConfig

__all__ = ["ViTConfig"]
