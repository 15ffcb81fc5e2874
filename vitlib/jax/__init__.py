"""The JAX (Flax NNX) side of vitlib: the ViT, its training loop and checkpoints."""

from vitlib.memory import keep_freed_memory

keep_freed_memory()  # before XLA starts its threads: vitlib/memory.py says why

from vitlib.jax.model import (PatchEmbedding, ShiftedPatchEmbedding, MultiHeadAttention, ViTMLP,
                              ViTBlock, ViT)
from vitlib.jax.checkpoint import save_checkpoint, load_checkpoint
from vitlib.jax.train import pick_device, train_step, evaluate, predict, fit

__all__ = ["PatchEmbedding", "ShiftedPatchEmbedding", "MultiHeadAttention", "ViTMLP", "ViTBlock",
           "ViT", "pick_device", "train_step", "evaluate", "predict", "fit", "save_checkpoint",
           "load_checkpoint"]
