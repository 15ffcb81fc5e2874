"""What a ViT costs: parameters, FLOPs and attention memory, counted from its ViTConfig.

Cutting an H x W image into P x P patches makes N = (H/P)(W/P) (+1 for <cls>) tokens (section
3.1 of Dosovitskiy et al. 2021). Everything a block does per token (the qkv and output
projections, the MLP) costs O(N D^2), but self-attention also compares every token with every
other one: the N x N score matrix costs O(N^2 D) FLOPs and O(N^2) memory per head (Vaswani et
al. 2017, table 1). Halving P multiplies N by about 4 and that part by about 16.

The counts follow vitlib/torch/model.py (and its JAX twin) layer by layer, so `param_counts`
equals the real models' parameter count exactly; tests/test_cost.py checks both frameworks.
FLOPs count the matrix products only, one multiply-add = 2 FLOPs. Biases, LayerNorm, softmax,
GELU and residual additions cost O(N D) each, small next to the O(N D^2) products, and are left
out, as in the usual ViT and Transformer FLOP counts. Pure Python integers: no framework needed.
"""

from vitlib.config import ViTConfig


def _check_cfg(cfg):
    if not isinstance(cfg, ViTConfig):
        raise ValueError(f"Expected a vitlib.ViTConfig, got {type(cfg).__name__}. Build one, "
                         f"e.g. ViTConfig.d2l() or ViTConfig(img_size=28, patch_size=7).")


def patch_sizes(img_size):
    """The patch sizes P that cut an img_size x img_size image into whole patches (the divisors).

    Args:
        img_size: side of the square image, in pixels.
    """
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size <= 0:
        raise ValueError(f"Expected img_size as a positive integer, got {img_size!r}.")
    return [p for p in range(1, img_size + 1) if img_size % p == 0]


def param_counts(cfg):
    """Learned parameters of `vitlib.torch.ViT(cfg)` / `vitlib.jax.ViT(cfg)`, part by part.

    Returns a dict of ints: patch_embedding, cls_token, pos_embedding, blocks (all of them),
    head (final LayerNorm + classifier), total.

    Args:
        cfg: a ViTConfig.
    """
    _check_cfg(cfg)
    C, P, D, M, K = (cfg.in_channels, cfg.patch_size, cfg.num_hiddens, cfg.mlp_num_hiddens,
                     cfg.num_classes)
    layer_norm = 2 * D  # a scale and a bias per feature
    attention = D * 3 * D + D * D + (3 * D + D if cfg.use_bias else 0)  # W_qkv, W_o (+ biases)
    mlp = D * M + M + M * D + D  # dense1 and dense2, with biases
    patch_dim = (5 if cfg.shifted_patches else 1) * C * P * P  # shifted: 5 stacked copies
    counts = {
        # one (patch_dim, D) matrix + a bias; shifted patches add a LayerNorm over patch_dim
        "patch_embedding": patch_dim * D + D + (2 * patch_dim if cfg.shifted_patches else 0),
        "cls_token": D if cfg.pool == "cls" else 0,
        "pos_embedding": cfg.seq_len * D,  # one learned D-vector per token position
        "blocks": cfg.num_blks * (2 * layer_norm + attention + mlp),
        "head": layer_norm + D * K + K,  # the final LayerNorm and the linear classifier
    }
    counts["total"] = sum(counts.values())
    return counts


def flops(cfg):
    """FLOPs of one forward pass for one image (matrix products, multiply-add = 2 FLOPs).

    Returns a dict of ints: patch_embedding; attention_qkv (the (D, 3D) projection),
    attention_scores (q k^T and weights @ v, the part quadratic in N), attention_out (W_o) and
    their sum attention; mlp; head; total. Attention and MLP are summed over all blocks.

    Args:
        cfg: a ViTConfig.
    """
    _check_cfg(cfg)
    N, D, M, L = cfg.seq_len, cfg.num_hiddens, cfg.mlp_num_hiddens, cfg.num_blks
    patch_dim = cfg.in_channels * cfg.patch_size**2  # C*P*P pixels in one patch
    patch_dim *= 5 if cfg.shifted_patches else 1  # the image and 4 shifted copies
    counts = {
        "patch_embedding": 2 * cfg.num_patches * patch_dim * D,  # (H*W/P^2, C*P*P) @ (C*P*P, D)
        "attention_qkv": L * 2 * N * D * 3 * D,  # (N, D) @ (D, 3D)
        # Per head: q k^T is (N, Dh) @ (Dh, N) and weights @ v is (N, N) @ (N, Dh), each
        # 2 N^2 Dh FLOPs; Hd heads of size Dh = D / Hd make 2 N^2 D each.
        "attention_scores": L * 2 * (2 * N * N * D),
        "attention_out": L * 2 * N * D * D,  # (N, D) @ (D, D)
        "mlp": L * 2 * (2 * N * D * M),  # (N, D) @ (D, M), then (N, M) @ (M, D)
        "head": 2 * D * cfg.num_classes,  # one pooled token: (D,) @ (D, num_classes)
    }
    counts["attention"] = (counts["attention_qkv"] + counts["attention_scores"]
                           + counts["attention_out"])
    counts["total"] = (counts["patch_embedding"] + counts["attention"] + counts["mlp"]
                       + counts["head"])
    return counts


def train_flops(cfg):
    """About 3x the forward FLOPs: the backward pass costs about twice the forward one (the
    gradients with respect to the activations and with respect to the weights).

    Args:
        cfg: a ViTConfig.
    """
    return 3 * flops(cfg)["total"]


def attention_memory_bytes(cfg, dtype_bytes=4):
    """Memory of the attention weights, N x N numbers per head and block, for one image.

    Returns a dict of ints: per_head (one N x N matrix), per_layer (all Hd heads of one block),
    total (all blocks: what a training step keeps for the backward pass, per image, when
    attention is not fused).

    Args:
        cfg: a ViTConfig.
        dtype_bytes: bytes per number: 4 for float32, 2 for bfloat16/float16.
    """
    _check_cfg(cfg)
    if isinstance(dtype_bytes, bool) or not isinstance(dtype_bytes, int) or dtype_bytes <= 0:
        raise ValueError(f"Expected dtype_bytes as a positive integer (4 for float32, 2 for "
                         f"bfloat16), got {dtype_bytes!r}.")
    per_head = cfg.seq_len**2 * dtype_bytes
    per_layer = cfg.num_heads * per_head
    return {"per_head": per_head, "per_layer": per_layer, "total": cfg.num_blks * per_layer}
