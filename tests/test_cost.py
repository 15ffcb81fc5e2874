"""The cost model against hand counts and against the real models: parameters in both
frameworks, FLOPs against PyTorch's own FLOP counter, and the N^2 growth of attention."""

import dataclasses

import jax
import pytest
import torch
from flax import nnx
from torch.utils.flop_counter import FlopCounterMode

import vitlib.jax as vj
import vitlib.torch as vt
from vitlib import ViTConfig
from vitlib.cost import attention_memory_bytes, flops, param_counts, patch_sizes, train_flops

CONFIGS = [
    ViTConfig.d2l(),
    ViTConfig.tiny(),
    ViTConfig.tiny(use_bias=True, pool="mean"),
    ViTConfig.fashion_cpu(patch_size=4),
    ViTConfig.tiny(img_size=32, patch_size=8, in_channels=3, num_classes=7),
    ViTConfig.tiny(img_size=32, patch_size=8, in_channels=3, shifted_patches=True),
]


def test_d2l_parameters_by_hand():
    cfg = ViTConfig.d2l()  # 96x96x1, P=16, D=512, MLP 2048, 8 heads, 2 blocks, no qkv bias
    patch_embedding = 512 * 1 * 16 * 16 + 512  # conv kernel (D, C, P, P) + bias
    cls_token = 512
    pos_embedding = 37 * 512  # (96/16)^2 = 36 patches + <cls>
    block = (2 * 1024  # ln1, ln2: scale + bias
             + 512 * 1536  # W_qkv, no bias
             + 512 * 512  # W_o, no bias
             + 512 * 2048 + 2048  # dense1
             + 2048 * 512 + 512)  # dense2
    head = 1024 + 512 * 10 + 10  # final LayerNorm + Linear
    counts = param_counts(cfg)
    assert counts == {"patch_embedding": patch_embedding, "cls_token": cls_token,
                      "pos_embedding": pos_embedding, "blocks": 2 * block, "head": head,
                      "total": 6_457_866}
    assert patch_embedding + cls_token + pos_embedding + 2 * block + head == 6_457_866


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.img_size}-{c.patch_size}-{c.pool}"
                         f"{'-shifted' if c.shifted_patches else ''}")
def test_parameters_equal_the_real_models(cfg):
    t = sum(p.numel() for p in vt.ViT(cfg).parameters())
    j = sum(x.size for x in jax.tree.leaves(nnx.state(vj.ViT(cfg, rngs=nnx.Rngs(0)), nnx.Param)))
    assert param_counts(cfg)["total"] == t == j


def test_cls_token_and_attention_biases_are_counted():
    cfg = ViTConfig.tiny()
    mean = param_counts(dataclasses.replace(cfg, pool="mean"))
    assert param_counts(cfg)["total"] - mean["total"] == 32 + 32  # <cls> + its position
    biased = param_counts(dataclasses.replace(cfg, use_bias=True))
    assert biased["blocks"] - param_counts(cfg)["blocks"] == 2 * (3 * 32 + 32)


def test_attention_score_flops_by_hand():
    cfg = ViTConfig.d2l()  # N = 37, D = 512, 8 heads of 64, 2 blocks
    # Per block and head: q k^T is (37, 64) @ (64, 37) and weights @ v is (37, 37) @ (37, 64),
    # 37 * 37 * 64 multiply-adds each, 2 FLOPs per multiply-add.
    per_head = 2 * (37 * 37 * 64) + 2 * (37 * 37 * 64)
    assert flops(cfg)["attention_scores"] == 2 * 8 * per_head == 5_607_424
    assert flops(cfg)["attention_qkv"] == 2 * 2 * 37 * 512 * 1536
    assert flops(cfg)["mlp"] == 2 * (2 * 37 * 512 * 2048 + 2 * 37 * 2048 * 512)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.img_size}-{c.patch_size}-{c.pool}"
                         f"{'-shifted' if c.shifted_patches else ''}")
def test_forward_flops_equal_pytorchs_flop_counter(cfg):
    model = vt.ViT(cfg).eval()
    for blk in model.blks:
        blk.attention.fused = False  # the plain path: q @ k^T and weights @ v as counted bmm's
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, cfg.in_channels, cfg.img_size, cfg.img_size))
    f = flops(cfg)
    assert f["total"] == counter.get_total_flops()
    by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    assert f["attention_scores"] == by_op["aten.bmm"]
    if cfg.shifted_patches:  # no convolution: a LayerNorm, then one (5C*P*P, D) matrix
        assert "aten.convolution" not in by_op
        with FlopCounterMode(display=False) as embedding:
            model.patch_embedding(torch.zeros(1, cfg.in_channels, cfg.img_size, cfg.img_size))
        assert f["patch_embedding"] == embedding.get_total_flops()
    else:
        assert f["patch_embedding"] == by_op["aten.convolution"]


def test_parts_add_up():
    for cfg in CONFIGS:
        f = flops(cfg)
        assert f["attention"] == f["attention_qkv"] + f["attention_scores"] + f["attention_out"]
        assert f["total"] == f["patch_embedding"] + f["attention"] + f["mlp"] + f["head"]
        assert train_flops(cfg) == 3 * f["total"]


def test_attention_scores_grow_quadratically_in_tokens():
    big = ViTConfig.d2l(patch_size=16)  # 36 patches, N = 37
    small = ViTConfig.d2l(patch_size=8)  # 144 patches, N = 145: about 4x the tokens
    ratio_n = small.seq_len / big.seq_len
    ratio_scores = flops(small)["attention_scores"] / flops(big)["attention_scores"]
    ratio_mlp = flops(small)["mlp"] / flops(big)["mlp"]
    assert ratio_scores == pytest.approx(ratio_n**2)  # ~15.4x
    assert ratio_mlp == pytest.approx(ratio_n)  # the per-token parts grow only linearly
    assert ratio_scores > 15 and ratio_mlp < 4
    # Per-token costs do not depend on P except through N: the pixels per token grow as P^2.
    assert flops(small)["patch_embedding"] == flops(big)["patch_embedding"]


def test_attention_memory():
    cfg = ViTConfig.d2l()
    mem = attention_memory_bytes(cfg)
    assert mem == {"per_head": 37 * 37 * 4, "per_layer": 8 * 37 * 37 * 4,
                   "total": 2 * 8 * 37 * 37 * 4}
    assert attention_memory_bytes(cfg, dtype_bytes=2)["per_head"] == 37 * 37 * 2
    pixels = ViTConfig.d2l(patch_size=1)  # every pixel a token: N = 9217
    assert attention_memory_bytes(pixels)["per_head"] == 9217**2 * 4  # 340 MB for one matrix


def test_patch_sizes_are_the_divisors():
    assert patch_sizes(28) == [1, 2, 4, 7, 14, 28]
    assert patch_sizes(96) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 96]
    for p in patch_sizes(224):
        ViTConfig(img_size=224, patch_size=p)  # every one is accepted


def test_bad_input_gets_a_sentence():
    with pytest.raises(ValueError, match="Expected a vitlib.ViTConfig"):
        flops({"img_size": 28})
    with pytest.raises(ValueError, match="dtype_bytes"):
        attention_memory_bytes(ViTConfig.tiny(), dtype_bytes=0)
    with pytest.raises(ValueError, match="img_size"):
        patch_sizes(0)
