"""The Vision Transformer in PyTorch (Dosovitskiy et al. 2021; d2l.ai section 11.8).

An image is cut into patches, each patch becomes a token (section 3.1 of the paper), a <cls>
token and learned position embeddings are added, pre-norm Transformer encoder blocks mix the
tokens, and a linear head classifies the <cls> token (or the mean of the tokens).
The JAX twin, `vitlib/jax/model.py`, has the same classes, arguments and initialisation.
Shapes: B batch, C channels, H/W height/width, P patch size, N tokens, D hidden size,
Hd heads, Dh head size.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from vitlib.checks import check_images
from vitlib.config import ViTConfig

LN_EPS = 1e-6  # the ViT paper's value; PyTorch's default is 1e-5 and Flax's is 1e-6
INIT_STD = 0.02  # truncated normal std for every weight matrix and the position embedding


def trunc_normal_(w):
    # Cut at 2 std, like jax.nn.initializers.truncated_normal (torch's a=-2, b=2 are absolute).
    return nn.init.trunc_normal_(w, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD)


def init_(layer):
    # The initialisation vitlib.jax passes as kernel_init/bias_init: truncated normal, zero bias.
    trunc_normal_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def lecun_normal_(w):
    # Variance 1 / fan_in, cut at 2 std, like jax.nn.initializers.lecun_normal, which widens the
    # std by 1 / 0.8796 so that the variance after the cut is still 1 / fan_in.
    std = math.sqrt(1 / w[0].numel()) / 0.87962566103423978  # w[0]: one output's fan-in weights
    return nn.init.trunc_normal_(w, std=std, a=-2 * std, b=2 * std)


class PatchEmbedding(nn.Module):
    """Cut the image into P x P patches and project each to D features.

    A convolution with kernel P and stride P is exactly "flatten every patch and multiply it by
    one (C*P*P, D) matrix", computed in one call.

    Args:
        img_size: side of the square input image.
        patch_size: side of a square patch; divides img_size.
        in_channels: image channels C.
        num_hiddens: token width D.
    """

    def __init__(self, img_size, patch_size, in_channels, num_hiddens):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.conv = init_(nn.Conv2d(in_channels, num_hiddens, kernel_size=patch_size,
                                     stride=patch_size))

    def forward(self, x):
        x = self.conv(x)  # (B, C, H, W) -> (B, D, H/P, W/P)
        return x.flatten(2).transpose(1, 2)  # (B, D, H/P, W/P) -> (B, N, D)


class ShiftedPatchEmbedding(nn.Module):
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
    """

    def __init__(self, img_size, patch_size, in_channels, num_hiddens):
        super().__init__()
        self.num_patches = (img_size // patch_size) ** 2
        self.patch_size = patch_size
        patch_dim = 5 * in_channels * patch_size**2
        self.norm = nn.LayerNorm(patch_dim, eps=LN_EPS)
        self.proj = init_(nn.Linear(patch_dim, num_hiddens))

    def forward(self, x):
        B, C, H, W = x.shape
        P, s = self.patch_size, self.patch_size // 2
        padded = F.pad(x, (s, s, s, s))  # zeros around the image: (B, C, H + 2s, W + 2s)
        shifts = [padded[:, :, dy:dy + H, dx:dx + W] for dy in (0, 2 * s) for dx in (0, 2 * s)]
        x = torch.cat([x, *shifts], dim=1)  # (B, 5C, H, W)
        x = x.reshape(B, 5 * C, H // P, P, W // P, P)  # (B, 5C, H/P, P, W/P, P)
        x = x.permute(0, 2, 4, 3, 5, 1).reshape(B, self.num_patches, -1)  # (B, N, P*P*5C)
        return self.proj(self.norm(x))  # (B, N, 5C*P*P) -> (B, N, D)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product self-attention.

    The query, key and value projections are one (D, 3D) matrix: the same math as three
    (D, D) matrices, in one matrix multiplication.

    Args:
        num_hiddens: token width D.
        num_heads: heads Hd; divides D.
        dropout: dropout on the attention weights during training.
        use_bias: bias in the projections.
    """

    def __init__(self, num_hiddens, num_heads, dropout, use_bias):
        super().__init__()
        self.num_heads = num_heads
        self.W_qkv = init_(nn.Linear(num_hiddens, 3 * num_hiddens, bias=use_bias))
        self.W_o = init_(nn.Linear(num_hiddens, num_hiddens, bias=use_bias))
        self.dropout = nn.Dropout(dropout)
        self.fused = True  # False forces the plain path below, e.g. to compare the two

    def forward(self, x, return_attention=False):
        B, N, D = x.shape
        qkv = self.W_qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads)  # (B, N, 3, Hd, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, Hd, N, Dh)
        if self.fused and not return_attention:
            p = self.dropout.p if self.training else 0.0
            x, weights = F.scaled_dot_product_attention(q, k, v, dropout_p=p), None  # (B, Hd, N, Dh)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, Hd, N, N)
            weights = scores.softmax(dim=-1)  # each query's weights sum to 1 over the N keys
            x = self.dropout(weights) @ v  # (B, Hd, N, N) @ (B, Hd, N, Dh) -> (B, Hd, N, Dh)
        x = x.transpose(1, 2).reshape(B, N, D)  # (B, Hd, N, Dh) -> (B, N, D)
        return self.W_o(x), weights


class ViTMLP(nn.Module):
    """The position-wise feed-forward network of a block: D -> mlp_num_hiddens -> D, exact GELU.

    Args:
        num_hiddens: token width D (input and output).
        mlp_num_hiddens: hidden width.
        dropout: dropout after each layer during training.
    """

    def __init__(self, num_hiddens, mlp_num_hiddens, dropout):
        super().__init__()
        self.dense1 = init_(nn.Linear(num_hiddens, mlp_num_hiddens))
        self.dense2 = init_(nn.Linear(mlp_num_hiddens, num_hiddens))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = self.dropout(F.gelu(self.dense1(x)))  # (B, N, D) -> (B, N, mlp_num_hiddens)
        return self.dropout(self.dense2(x))  # (B, N, mlp_num_hiddens) -> (B, N, D)


class ViTBlock(nn.Module):
    """A pre-norm Transformer encoder block: LayerNorm before each sublayer, residual around it.

    Args:
        num_hiddens: token width D.
        mlp_num_hiddens: hidden width of the MLP.
        num_heads: attention heads.
        dropout: dropout in attention and MLP.
        use_bias: bias in the attention projections.
    """

    def __init__(self, num_hiddens, mlp_num_hiddens, num_heads, dropout, use_bias):
        super().__init__()
        self.ln1 = nn.LayerNorm(num_hiddens, eps=LN_EPS)
        self.attention = MultiHeadAttention(num_hiddens, num_heads, dropout, use_bias)
        self.ln2 = nn.LayerNorm(num_hiddens, eps=LN_EPS)
        self.mlp = ViTMLP(num_hiddens, mlp_num_hiddens, dropout)

    def forward(self, x, return_attention=False):
        y, weights = self.attention(self.ln1(x), return_attention)
        x = x + y  # (B, N, D)
        x = x + self.mlp(self.ln2(x))  # (B, N, D)
        return x, weights


def xavier_init_(vit):
    """Re-initialise a ViT as the official ViT code does (google-research/vision_transformer,
    timm's weight_init="jax"): every encoder matrix xavier-uniform, the patch embedding
    lecun-normal, the head zero. These scales follow the layer's shape: std about 0.06 at D 128
    instead of a fixed 0.02, and a small ViT learns faster from them (README, Results).

    Args:
        vit: a ViT; its weights are overwritten in place.
    """
    for module in vit.blks.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)  # U(-a, a), a = sqrt(6 / (fan_in + fan_out))
    embedding = vit.patch_embedding
    lecun_normal_(embedding.proj.weight if isinstance(embedding, ShiftedPatchEmbedding)
                  else embedding.conv.weight)
    nn.init.zeros_(vit.head.weight)  # every class starts equally likely


class ViT(nn.Module):
    """The Vision Transformer classifier.

    Args:
        cfg: a ViTConfig. Input (B, C, H, W) floats; output (B, num_classes) logits.
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.num_hiddens
        embedding = ShiftedPatchEmbedding if cfg.shifted_patches else PatchEmbedding
        self.patch_embedding = embedding(cfg.img_size, cfg.patch_size, cfg.in_channels, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.pool == "cls" else None
        self.pos_embedding = nn.Parameter(trunc_normal_(torch.empty(1, cfg.seq_len, D)))
        self.dropout = nn.Dropout(cfg.emb_dropout)
        self.blks = nn.ModuleList([
            ViTBlock(D, cfg.mlp_num_hiddens, cfg.num_heads, cfg.blk_dropout, cfg.use_bias)
            for _ in range(cfg.num_blks)])
        self.norm = nn.LayerNorm(D, eps=LN_EPS)
        self.head = init_(nn.Linear(D, cfg.num_classes))
        if cfg.weight_init == "xavier":
            xavier_init_(self)

    def forward_features(self, x, return_attention=False):
        """Images (B, C, H, W) -> tokens (B, N, D) and a list of (B, Hd, N, N) attention weights
        per block (an empty list unless return_attention)."""
        check_images(x.shape, self.cfg, "NCHW")
        x = self.patch_embedding(x)  # (B, C, H, W) -> (B, H*W/P^2, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # -> (B, N, D)
        x = self.dropout(x + self.pos_embedding)
        attentions = []
        for blk in self.blks:
            x, weights = blk(x, return_attention)
            if return_attention:
                attentions.append(weights)
        return x, attentions

    def forward_head(self, x):
        """Tokens (B, N, D) -> logits (B, num_classes)."""
        x = x[:, 0] if self.cfg.pool == "cls" else x.mean(dim=1)  # (B, N, D) -> (B, D)
        return self.head(self.norm(x))  # (B, D) -> (B, num_classes)

    def forward(self, x):
        return self.forward_head(self.forward_features(x)[0])
