"""Same weights, same function: porting between the PyTorch and Flax NNX ViTs, both ways."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import vitlib.jax as vj
import vitlib.torch as vt
from vitlib import ViTConfig
from vitlib.interop import jax_to_torch, torch_to_jax

CONFIGS = {
    "gray-p4-cls-depth1": ViTConfig(img_size=16, patch_size=4, in_channels=1, num_hiddens=32,
                                    mlp_num_hiddens=64, num_heads=2, num_blks=1),
    "rgb-p8-bias-mean-depth3": ViTConfig(img_size=32, patch_size=8, in_channels=3, num_hiddens=48,
                                         mlp_num_hiddens=96, num_heads=4, num_blks=3,
                                         use_bias=True, pool="mean"),
    "gray-p7-depth4": ViTConfig.fashion_cpu(),
    "rgb-p2-bias-cls-depth2": ViTConfig(img_size=12, patch_size=2, in_channels=3, num_hiddens=24,
                                        mlp_num_hiddens=40, num_heads=3, num_blks=2, use_bias=True,
                                        num_classes=7),
    "gray-p14-mean-depth4": ViTConfig(img_size=28, patch_size=14, in_channels=1, num_hiddens=64,
                                      mlp_num_hiddens=128, num_heads=8, num_blks=4, pool="mean"),
    "d2l-p16-96px": ViTConfig.d2l(),
    "rgb-p4-shifted-mean-depth2": ViTConfig(img_size=16, patch_size=4, in_channels=3,
                                            num_hiddens=32, mlp_num_hiddens=64, num_heads=2,
                                            num_blks=2, pool="mean", shifted_patches=True),
    "gray-p7-shifted-mean-depth4": ViTConfig.fashion_cpu(pool="mean", shifted_patches=True),
}


def n_params_torch(m):
    return sum(p.numel() for p in m.parameters())


def n_params_jax(m):
    return sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param)))


def logits_both(tm, jm, seed=0, batch=4):
    cfg = tm.cfg
    x = np.random.default_rng(seed).normal(size=(batch, cfg.in_channels, cfg.img_size, cfg.img_size))
    x = x.astype(np.float32)
    tm.eval()
    jm.eval()
    with torch.no_grad():
        t = tm(torch.from_numpy(x)).numpy()
    j = np.asarray(jm(jnp.asarray(x.transpose(0, 2, 3, 1))))  # NCHW -> NHWC
    return t, j


@pytest.mark.parametrize("name", CONFIGS)
def test_torch_to_jax_gives_the_same_logits(name):
    torch.manual_seed(0)
    tm = vt.ViT(CONFIGS[name])
    t, j = logits_both(tm, torch_to_jax(tm))
    assert np.abs(t - j).max() < 1e-4
    assert np.abs(t).max() > 1e-3  # not trivially zero


@pytest.mark.parametrize("name", CONFIGS)
def test_jax_to_torch_gives_the_same_logits(name):
    jm = vj.ViT(CONFIGS[name], rngs=nnx.Rngs(1))
    t, j = logits_both(jax_to_torch(jm), jm, seed=1)
    assert np.abs(t - j).max() < 1e-4


@pytest.mark.parametrize("name", CONFIGS)
def test_round_trip_is_exact_and_param_counts_match(name):
    torch.manual_seed(2)
    tm = vt.ViT(CONFIGS[name])
    back = jax_to_torch(torch_to_jax(tm))
    before, after = tm.state_dict(), back.state_dict()
    assert list(before) == list(after)
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert n_params_torch(tm) == n_params_jax(vj.ViT(CONFIGS[name], rngs=nnx.Rngs(0)))


def test_parity_holds_after_training_like_changes():
    """Perturb every weight (so LayerNorm scales, biases and the <cls> token are not at their
    initial 1s and 0s) and check the logits still agree: nothing is matched by accident."""
    cfg = CONFIGS["rgb-p8-bias-mean-depth3"]
    cfg = dataclasses.replace(cfg, pool="cls")
    torch.manual_seed(3)
    tm = vt.ViT(cfg)
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    t, j = logits_both(tm, torch_to_jax(tm), seed=3)
    assert np.abs(t - j).max() < 1e-4
    # And a wrong port is caught: swapping two blocks changes the logits.
    jm = torch_to_jax(tm)
    jm.blks[0].mlp.dense1.kernel[...] = jm.blks[0].mlp.dense1.kernel[...] * 1.5
    t2, j2 = logits_both(tm, jm, seed=3)
    assert np.abs(t2 - j2).max() > 1e-3


def test_d2l_parameter_count_by_hand():
    """The chapter's model, counted term by term, equals both frameworks' count."""
    C, P, D, M, L, K, N = 1, 16, 512, 2048, 2, 10, (96 // 16) ** 2 + 1
    patch_embedding = C * P * P * D + D  # conv weight + bias
    cls_token, pos_embedding = D, N * D
    layer_norm = 2 * D  # scale + bias
    attention = D * 3 * D + D * D  # W_qkv and W_o, no bias (use_bias=False)
    mlp = D * M + M + M * D + D  # two Linear layers with bias
    block = 2 * layer_norm + attention + mlp
    head = layer_norm + D * K + K
    total = patch_embedding + cls_token + pos_embedding + L * block + head
    assert total == 6_457_866
    cfg = ViTConfig.d2l()
    assert n_params_torch(vt.ViT(cfg)) == total
    assert n_params_jax(vj.ViT(cfg, rngs=nnx.Rngs(0))) == total


def test_porting_between_different_configs_is_refused():
    tm = vt.ViT(ViTConfig.tiny())
    other = vj.ViT(ViTConfig.tiny(patch_size=8, num_blks=1), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"torch -> JAX.*patch_size: 4 vs 8, num_blks: 2 vs 1"):
        torch_to_jax(tm, into=other)
    with pytest.raises(ValueError, match=r"JAX -> torch.*patch_size: 8 vs 4"):
        jax_to_torch(other, into=tm)
    # Same config: porting into an existing model overwrites it.
    same = vj.ViT(ViTConfig.tiny(), rngs=nnx.Rngs(5))
    assert torch_to_jax(tm, into=same) is same
    t, j = logits_both(tm, same)
    assert np.abs(t - j).max() < 1e-4
