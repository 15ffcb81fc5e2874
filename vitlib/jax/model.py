"""The Vision Transformer in JAX with Flax NNX (Dosovitskiy et al. 2021; d2l.ai section 11.8).

The twin of `vitlib/torch/model.py`: the same classes, arguments and initialisation, so the same
weights give the same logits. What differs is the framework: images are (B, H, W, C) (NHWC, the
layout XLA's convolutions prefer), randomness comes from explicit `nnx.Rngs` keys instead of a
global seed, and the defaults that differ from PyTorch are set by hand (exact GELU, LayerNorm eps).
Shapes: B batch, C channels, H/W height/width, P patch size, N tokens, D hidden size,
Hd heads, Dh head size.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from vitlib.checks import check_images
from vitlib.config import ViTConfig

LN_EPS = 1e-6  # the ViT paper's value; Flax's default, PyTorch's is 1e-5
INIT_STD = 0.02  # truncated normal std for every weight matrix and the position embedding
trunc_normal = nnx.initializers.truncated_normal(stddev=INIT_STD)  # cut at 2 std, like torch's
zeros = nnx.initializers.zeros
xavier_uniform = nnx.initializers.xavier_uniform()  # U(-a, a), a = sqrt(6 / (fan_in + fan_out))
lecun_normal = nnx.initializers.lecun_normal()  # variance 1 / fan_in, cut at 2 std


class PatchEmbedding(nnx.Module):
    """Cut the image into P x P patches and project each to D features.

    A convolution with kernel P and stride P is exactly "flatten every patch and multiply it by
    one (P*P*C, D) matrix", computed in one call.

    Args:
        img_size: side of the square input image.
        patch_size: side of a square patch; divides img_size.
        in_channels: image channels C.
        num_hiddens: token width D.
        rngs: random keys for the initialisation.
    """

    def __init__(self, img_size, patch_size, in_channels, num_hiddens, *, rngs: nnx.Rngs):
        self.num_patches = (img_size // patch_size) ** 2
        self.conv = nnx.Conv(in_channels, num_hiddens, kernel_size=(patch_size, patch_size),
                             strides=(patch_size, patch_size), padding="VALID",
                             kernel_init=trunc_normal, bias_init=zeros, rngs=rngs)

    def __call__(self, x):
        x = self.conv(x)  # (B, H, W, C) -> (B, H/P, W/P, D)
        return x.reshape(x.shape[0], -1, x.shape[-1])  # (B, H/P, W/P, D) -> (B, N, D)


class ShiftedPatchEmbedding(nnx.Module):
    """Shifted Patch Tokenization (Lee, Lee & Song 2021, "Vision Transformer for Small-Size
    Datasets", section 3.2): one token per P x P patch, as in PatchEmbedding, but each token also
    sees the pixels around its patch.

    The image and four copies of it shifted diagonally by half a patch are stacked as channels
    (5C), cut into patches, each flattened to a (P, P, 5C) vector, LayerNorm, then one
    (5C*P*P, D) matrix.

    Args:
        img_size: side of the square input image.
        patch_size: side of a square patch; divides img_size; at least 2.
        in_channels: image channels C.
        num_hiddens: token width D.
        rngs: random keys for the initialisation.
    """

    def __init__(self, img_size, patch_size, in_channels, num_hiddens, *, rngs: nnx.Rngs):
        self.num_patches = (img_size // patch_size) ** 2
        self.patch_size = patch_size
        patch_dim = 5 * in_channels * patch_size**2
        self.norm = nnx.LayerNorm(patch_dim, epsilon=LN_EPS, rngs=rngs)
        self.proj = nnx.Linear(patch_dim, num_hiddens, kernel_init=trunc_normal, bias_init=zeros,
                               rngs=rngs)

    def __call__(self, x):
        B, H, W, C = x.shape
        P, s = self.patch_size, self.patch_size // 2
        padded = jnp.pad(x, ((0, 0), (s, s), (s, s), (0, 0)))  # zeros: (B, H + 2s, W + 2s, C)
        shifts = [padded[:, dy:dy + H, dx:dx + W] for dy in (0, 2 * s) for dx in (0, 2 * s)]
        x = jnp.concatenate([x, *shifts], axis=-1)  # (B, H, W, 5C)
        x = x.reshape(B, H // P, P, W // P, P, 5 * C)  # (B, H/P, P, W/P, P, 5C)
        x = x.transpose(0, 1, 3, 2, 4, 5).reshape(B, self.num_patches, -1)  # (B, N, P*P*5C)
        return self.proj(self.norm(x))  # (B, N, 5C*P*P) -> (B, N, D)


class MultiHeadAttention(nnx.Module):
    """Multi-head scaled dot-product self-attention.

    The query, key and value projections are one (D, 3D) matrix: the same math as three
    (D, D) matrices, in one matrix multiplication.

    Args:
        num_hiddens: token width D.
        num_heads: heads Hd; divides D.
        dropout: dropout on the attention weights during training.
        use_bias: bias in the projections.
        rngs: random keys for the initialisation and dropout.
    """

    def __init__(self, num_hiddens, num_heads, dropout, use_bias, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.W_qkv = nnx.Linear(num_hiddens, 3 * num_hiddens, use_bias=use_bias,
                                kernel_init=trunc_normal, bias_init=zeros, rngs=rngs)
        self.W_o = nnx.Linear(num_hiddens, num_hiddens, use_bias=use_bias,
                              kernel_init=trunc_normal, bias_init=zeros, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.fused = True  # False forces the plain path below, e.g. to compare the two

    def __call__(self, x, return_attention=False):
        B, N, D = x.shape
        qkv = self.W_qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads)  # (B, N, 3, Hd, Dh)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # 3 x (B, N, Hd, Dh)
        # jax.nn.dot_product_attention has no dropout: the plain path runs when it is needed.
        needs_dropout = self.dropout.rate > 0 and not self.dropout.deterministic
        if self.fused and not return_attention and not needs_dropout:
            x, weights = jax.nn.dot_product_attention(q, k, v), None  # (B, N, Hd, Dh)
        else:
            scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])  # (B, Hd, N, N)
            weights = jax.nn.softmax(scores, axis=-1)  # each query's weights sum to 1 over N keys
            x = jnp.einsum("bhqk,bkhd->bqhd", self.dropout(weights), v)  # (B, N, Hd, Dh)
        x = x.reshape(B, N, D)  # (B, N, Hd, Dh) -> (B, N, D)
        return self.W_o(x), weights


class ViTMLP(nnx.Module):
    """The position-wise feed-forward network of a block: D -> mlp_num_hiddens -> D, exact GELU.

    Args:
        num_hiddens: token width D (input and output).
        mlp_num_hiddens: hidden width.
        dropout: dropout after each layer during training.
        rngs: random keys for the initialisation and dropout.
    """

    def __init__(self, num_hiddens, mlp_num_hiddens, dropout, *, rngs: nnx.Rngs):
        self.dense1 = nnx.Linear(num_hiddens, mlp_num_hiddens, kernel_init=trunc_normal,
                                 bias_init=zeros, rngs=rngs)
        self.dense2 = nnx.Linear(mlp_num_hiddens, num_hiddens, kernel_init=trunc_normal,
                                 bias_init=zeros, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x):
        # approximate=False: jax.nn.gelu defaults to the tanh approximation, torch to the exact erf.
        x = self.dropout(jax.nn.gelu(self.dense1(x), approximate=False))  # (B, N, D) -> (B, N, M)
        return self.dropout(self.dense2(x))  # (B, N, mlp_num_hiddens) -> (B, N, D)


class ViTBlock(nnx.Module):
    """A pre-norm Transformer encoder block: LayerNorm before each sublayer, residual around it.

    Args:
        num_hiddens: token width D.
        mlp_num_hiddens: hidden width of the MLP.
        num_heads: attention heads.
        dropout: dropout in attention and MLP.
        use_bias: bias in the attention projections.
        rngs: random keys for the initialisation and dropout.
    """

    def __init__(self, num_hiddens, mlp_num_hiddens, num_heads, dropout, use_bias, *,
                 rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(num_hiddens, epsilon=LN_EPS, rngs=rngs)
        self.attention = MultiHeadAttention(num_hiddens, num_heads, dropout, use_bias, rngs=rngs)
        self.ln2 = nnx.LayerNorm(num_hiddens, epsilon=LN_EPS, rngs=rngs)
        self.mlp = ViTMLP(num_hiddens, mlp_num_hiddens, dropout, rngs=rngs)

    def __call__(self, x, return_attention=False):
        y, weights = self.attention(self.ln1(x), return_attention)
        x = x + y  # (B, N, D)
        x = x + self.mlp(self.ln2(x))  # (B, N, D)
        return x, weights


def xavier_init(vit, rngs: nnx.Rngs):
    """Re-initialise a ViT as the official ViT code does (google-research/vision_transformer,
    timm's weight_init="jax"): every encoder matrix xavier-uniform, the patch embedding
    lecun-normal, the head zero. These scales follow the layer's shape: std about 0.06 at D 128
    instead of a fixed 0.02, and a small ViT learns faster from them (README, Results).

    Args:
        vit: a ViT; its weights are overwritten in place.
        rngs: random keys for the new weights.
    """
    for _, module in nnx.iter_graph(vit.blks):
        if isinstance(module, nnx.Linear):
            module.kernel[...] = xavier_uniform(rngs.params(), module.kernel.shape)
    embedding = vit.patch_embedding
    layer = embedding.proj if isinstance(embedding, ShiftedPatchEmbedding) else embedding.conv
    layer.kernel[...] = lecun_normal(rngs.params(), layer.kernel.shape)
    vit.head.kernel[...] = jnp.zeros_like(vit.head.kernel[...])  # every class starts equally likely


class ViT(nnx.Module):
    """The Vision Transformer classifier.

    Args:
        cfg: a ViTConfig. Input (B, H, W, C) floats; output (B, num_classes) logits.
        rngs: random keys for the initialisation and dropout, e.g. nnx.Rngs(0).
    """

    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        D = cfg.num_hiddens
        embedding = ShiftedPatchEmbedding if cfg.shifted_patches else PatchEmbedding
        self.patch_embedding = embedding(cfg.img_size, cfg.patch_size, cfg.in_channels, D,
                                         rngs=rngs)
        self.cls_token = nnx.Param(jnp.zeros((1, 1, D))) if cfg.pool == "cls" else None
        self.pos_embedding = nnx.Param(trunc_normal(rngs.params(), (1, cfg.seq_len, D)))
        self.dropout = nnx.Dropout(cfg.emb_dropout, rngs=rngs)
        self.blks = nnx.List([
            ViTBlock(D, cfg.mlp_num_hiddens, cfg.num_heads, cfg.blk_dropout, cfg.use_bias,
                     rngs=rngs)
            for _ in range(cfg.num_blks)])
        self.norm = nnx.LayerNorm(D, epsilon=LN_EPS, rngs=rngs)
        self.head = nnx.Linear(D, cfg.num_classes, kernel_init=trunc_normal, bias_init=zeros,
                               rngs=rngs)
        if cfg.weight_init == "xavier":
            xavier_init(self, rngs)

    def forward_features(self, x, return_attention=False):
        """Images (B, H, W, C) -> tokens (B, N, D) and a list of (B, Hd, N, N) attention weights
        per block (an empty list unless return_attention)."""
        check_images(x.shape, self.cfg, "NHWC")
        x = self.patch_embedding(x)  # (B, H, W, C) -> (B, H*W/P^2, D)
        if self.cls_token is not None:
            cls = jnp.broadcast_to(self.cls_token[...], (x.shape[0], 1, x.shape[-1]))
            x = jnp.concatenate([cls, x], axis=1)  # -> (B, N, D)
        x = self.dropout(x + self.pos_embedding[...])
        attentions = []
        for blk in self.blks:
            x, weights = blk(x, return_attention)
            if return_attention:
                attentions.append(weights)
        return x, attentions

    def forward_head(self, x):
        """Tokens (B, N, D) -> logits (B, num_classes)."""
        x = x[:, 0] if self.cfg.pool == "cls" else x.mean(axis=1)  # (B, N, D) -> (B, D)
        return self.head(self.norm(x))  # (B, D) -> (B, num_classes)

    def __call__(self, x):
        return self.forward_head(self.forward_features(x)[0])
