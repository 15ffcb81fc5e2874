"""The JAX (Flax NNX) side of vitlib: the ViT, its training loop and checkpoints."""

from vitlib.jax.model import PatchEmbedding, MultiHeadAttention, ViTMLP, ViTBlock, ViT

__all__ = ["PatchEmbedding", "MultiHeadAttention", "ViTMLP", "ViTBlock", "ViT"]
