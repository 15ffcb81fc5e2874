"""The twin models, module by module: shapes, fused vs plain attention, attention weights,
initialisation, and the errors bad input gets. Each test runs the same check in both frameworks."""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import vitlib.jax as vj
import vitlib.torch as vt
from vitlib import ViTConfig

B = 3
CLASSES = ("PatchEmbedding", "ShiftedPatchEmbedding", "MultiHeadAttention", "ViTMLP", "ViTBlock",
           "ViT")


def images(cfg, layout, seed=0):
    x = np.random.default_rng(seed).normal(size=(B, cfg.in_channels, cfg.img_size, cfg.img_size))
    x = x.astype(np.float32)
    return torch.from_numpy(x) if layout == "NCHW" else jnp.asarray(x.transpose(0, 2, 3, 1))


def tokens(n, d, seed=0):
    return np.random.default_rng(seed).normal(size=(B, n, d)).astype(np.float32)


def test_same_classes_with_same_constructor_arguments():
    for name in CLASSES:
        t_args = list(inspect.signature(getattr(vt, name).__init__).parameters)
        j_args = [a for a in inspect.signature(getattr(vj, name).__init__).parameters if a != "rngs"]
        assert t_args == j_args, name


@pytest.mark.parametrize("embedding", ["PatchEmbedding", "ShiftedPatchEmbedding"])
@pytest.mark.parametrize("img_size, patch_size, channels",
                         [(28, 7, 1), (32, 4, 3), (96, 16, 1), (12, 2, 1)])
def test_patch_embedding_shapes(embedding, img_size, patch_size, channels):
    n = (img_size // patch_size) ** 2
    t = getattr(vt, embedding)(img_size, patch_size, channels, 24)
    j = getattr(vj, embedding)(img_size, patch_size, channels, 24, rngs=nnx.Rngs(0))
    x = np.zeros((B, channels, img_size, img_size), np.float32)
    assert t(torch.from_numpy(x)).shape == (B, n, 24) and t.num_patches == n
    assert j(jnp.asarray(x.transpose(0, 2, 3, 1))).shape == (B, n, 24) and j.num_patches == n
    if embedding == "ShiftedPatchEmbedding":  # the image and 4 shifted copies per patch
        assert t.proj.in_features == j.proj.in_features == 5 * channels * patch_size**2


@pytest.mark.parametrize("embedding", ["PatchEmbedding", "ShiftedPatchEmbedding"])
def test_only_shifted_patches_see_past_their_patch(embedding):
    # Change one pixel just outside the top-left 7x7 patch (row 3, column 8: patch (0, 1)) and
    # see which tokens move. Plain patches: only the token of patch (0, 1). Shifted patches: the
    # token of patch (0, 0) too, since a copy shifted by 3 pixels brings that pixel into it.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 1, 28, 28)).astype(np.float32)
    y = x.copy()
    y[0, 0, 3, 8] += 1.0
    t = getattr(vt, embedding)(28, 7, 1, 16)
    j = getattr(vj, embedding)(28, 7, 1, 16, rngs=nnx.Rngs(0))
    with torch.no_grad():
        t_moved = (t(torch.from_numpy(y)) - t(torch.from_numpy(x))).abs().amax(-1)[0].numpy()
    to_j = lambda a: jnp.asarray(a.transpose(0, 2, 3, 1))
    j_moved = np.abs(np.asarray(j(to_j(y)) - j(to_j(x)))).max(-1)[0]
    for moved in (t_moved, j_moved):
        expected = {0, 1} if embedding == "ShiftedPatchEmbedding" else {1}
        assert set(np.flatnonzero(moved > 1e-6)) == expected


def test_shifted_patches_choose_the_embedding_and_need_a_patch_of_2():
    cfg = ViTConfig.tiny(shifted_patches=True)
    assert isinstance(vt.ViT(cfg).patch_embedding, vt.ShiftedPatchEmbedding)
    assert isinstance(vj.ViT(cfg, rngs=nnx.Rngs(0)).patch_embedding, vj.ShiftedPatchEmbedding)
    assert isinstance(vt.ViT(ViTConfig.tiny()).patch_embedding, vt.PatchEmbedding)
    with pytest.raises(ValueError, match="patch_size >= 2"):
        ViTConfig.tiny(patch_size=1, shifted_patches=True)
    with pytest.raises(ValueError, match="shifted_patches must be True or False"):
        ViTConfig.tiny(shifted_patches="yes")


def test_block_and_mlp_keep_the_shape():
    x = tokens(17, 32)
    t_blk, t_mlp = vt.ViTBlock(32, 64, 4, 0.1, True), vt.ViTMLP(32, 64, 0.1)
    j_blk, j_mlp = vj.ViTBlock(32, 64, 4, 0.1, True, rngs=nnx.Rngs(0)), vj.ViTMLP(32, 64, 0.1, rngs=nnx.Rngs(0))
    assert t_blk(torch.from_numpy(x))[0].shape == (B, 17, 32)
    assert t_mlp(torch.from_numpy(x)).shape == (B, 17, 32)
    assert j_blk(jnp.asarray(x))[0].shape == (B, 17, 32)
    assert j_mlp(jnp.asarray(x)).shape == (B, 17, 32)


@pytest.mark.parametrize("use_bias", [False, True])
def test_fused_attention_equals_the_plain_formula(use_bias):
    x = tokens(50, 64, seed=1)
    t = vt.MultiHeadAttention(64, 4, 0.0, use_bias)
    j = vj.MultiHeadAttention(64, 4, 0.0, use_bias, rngs=nnx.Rngs(1))
    fused_t, w = t(torch.from_numpy(x))
    assert w is None  # the fused kernel does not materialise the weights
    fused_j, _ = j(jnp.asarray(x))
    t.fused = j.fused = False
    plain_t, _ = t(torch.from_numpy(x))
    plain_j, _ = j(jnp.asarray(x))
    torch.testing.assert_close(fused_t, plain_t, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(fused_j), np.asarray(plain_j), atol=1e-6, rtol=1e-5)
    # The plain path really is the formula: rebuild it from the weights by hand.
    with torch.no_grad():
        q, k, v = t.W_qkv(torch.from_numpy(x)).reshape(B, 50, 3, 4, 16).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / 4.0, -1) @ v
        by_hand = t.W_o(a.transpose(1, 2).reshape(B, 50, 64))
    torch.testing.assert_close(plain_t, by_hand)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_every_layer_returns_attention_weights_on_request(pool):
    cfg = ViTConfig.tiny(num_blks=3, num_heads=2, pool=pool)
    tm, jm = vt.ViT(cfg).eval(), vj.ViT(cfg, rngs=nnx.Rngs(0))
    jm.eval()
    t_feats, t_att = tm.forward_features(images(cfg, "NCHW"), return_attention=True)
    j_feats, j_att = jm.forward_features(images(cfg, "NHWC"), return_attention=True)
    n = cfg.seq_len
    for att in (t_att, j_att):
        assert len(att) == 3
        for a in att:
            assert tuple(a.shape) == (B, 2, n, n)
            np.testing.assert_allclose(np.asarray(a.detach() if torch.is_tensor(a) else a).sum(-1), 1.0, atol=1e-5)
    assert tuple(t_feats.shape) == tuple(j_feats.shape) == (B, n, cfg.num_hiddens)
    assert tm.forward_features(images(cfg, "NCHW"))[1] == []
    # Asking for the weights does not change the logits.
    torch.testing.assert_close(tm.forward_head(t_feats), tm(images(cfg, "NCHW")), atol=1e-6, rtol=1e-5)


def test_mean_pooling_is_a_real_option():
    cls_cfg = ViTConfig.tiny()
    mean_cfg = dataclasses.replace(cls_cfg, pool="mean")
    tm = vt.ViT(mean_cfg)
    jm = vj.ViT(mean_cfg, rngs=nnx.Rngs(0))
    assert tm.cls_token is None and jm.cls_token is None
    assert tm.pos_embedding.shape == (1, mean_cfg.num_patches, 32)
    n_cls = sum(p.numel() for p in vt.ViT(cls_cfg).parameters())
    n_mean = sum(p.numel() for p in tm.parameters())
    assert n_cls - n_mean == 2 * 32  # the <cls> token and its position embedding
    # The head sees the mean of the tokens: shifting one token moves the logits.
    with torch.no_grad():
        feats, _ = tm.eval().forward_features(images(mean_cfg, "NCHW"))
    changed = feats.clone()
    changed[:, 1] += torch.randn(32)  # not a constant: LayerNorm would remove that
    assert not torch.allclose(tm.forward_head(feats), tm.forward_head(changed))
    assert tm(images(mean_cfg, "NCHW")).shape == (B, 10)
    jm.eval()
    assert jm(images(mean_cfg, "NHWC")).shape == (B, 10)


def test_same_initialisation_defaults_in_both_frameworks():
    cfg = ViTConfig.fashion_cpu(num_hiddens=256, mlp_num_hiddens=512)
    torch.manual_seed(0)
    tm, jm = vt.ViT(cfg), vj.ViT(cfg, rngs=nnx.Rngs(0))
    t_pos, j_pos = tm.pos_embedding.detach().numpy(), np.asarray(jm.pos_embedding[...])
    # Truncated normal, std 0.02 before truncation at 2 std (d2l: std 1 in torch, 0.01 in JAX).
    for pos in (t_pos, j_pos):
        assert 0.015 < pos.std() < 0.02 and np.abs(pos).max() <= 0.04 + 1e-6
    t_w = tm.blks[0].mlp.dense1.weight.detach().numpy()
    j_w = np.asarray(jm.blks[0].mlp.dense1.kernel[...])
    assert abs(t_w.std() - j_w.std()) < 1e-3 and np.abs(t_w).max() <= 0.04 + 1e-6
    assert np.all(tm.blks[0].mlp.dense1.bias.detach().numpy() == 0)
    assert np.all(np.asarray(jm.blks[0].mlp.dense1.bias[...]) == 0)
    assert np.all(tm.cls_token.detach().numpy() == 0) and np.all(np.asarray(jm.cls_token[...]) == 0)
    # LayerNorm eps 1e-6 on both sides (torch's default is 1e-5).
    t_eps = {m.eps for m in tm.modules() if isinstance(m, torch.nn.LayerNorm)}
    j_eps = {m.epsilon for _, m in nnx.iter_graph(jm) if isinstance(m, nnx.LayerNorm)}
    assert t_eps == j_eps == {1e-6}


@pytest.mark.parametrize("shifted", [False, True], ids=["patches", "shifted-patches"])
def test_xavier_init_follows_each_layers_shape_in_both_frameworks(shifted):
    """weight_init="xavier": encoder matrices U(-a, a) with a = sqrt(6 / (fan_in + fan_out)),
    the patch embedding lecun-normal (std sqrt(1 / fan_in), cut at 2 std), the head zero; the
    same distributions on both sides, and not the default's std 0.02."""
    cfg = ViTConfig.fashion_cpu(shifted_patches=shifted, weight_init="xavier")
    torch.manual_seed(0)
    tm, jm = vt.ViT(cfg), vj.ViT(cfg, rngs=nnx.Rngs(0))
    D, M = cfg.num_hiddens, cfg.mlp_num_hiddens
    for tb, jb in zip(tm.blks, jm.blks):
        for name, fan_in, fan_out in (("W_qkv", D, 3 * D), ("W_o", D, D)):
            ws = (getattr(tb.attention, name).weight.detach().numpy().T,
                  np.asarray(getattr(jb.attention, name).kernel[...]))
            a = np.sqrt(6 / (fan_in + fan_out))
            for w in ws:  # (fan_in, fan_out) on both sides
                assert w.shape == (fan_in, fan_out) and np.abs(w).max() <= a
                assert abs(w.std() - a / np.sqrt(3)) < 0.05 * a / np.sqrt(3)
        for name, fan_in, fan_out in (("dense1", D, M), ("dense2", M, D)):
            a = np.sqrt(6 / (fan_in + fan_out))
            for w in (getattr(tb.mlp, name).weight.detach().numpy(),
                      np.asarray(getattr(jb.mlp, name).kernel[...])):
                assert np.abs(w).max() <= a and abs(w.std() - a / np.sqrt(3)) < 0.05 * a / np.sqrt(3)
    if shifted:
        t_emb = tm.patch_embedding.proj.weight.detach().numpy()
        j_emb = np.asarray(jm.patch_embedding.proj.kernel[...])
    else:
        t_emb = tm.patch_embedding.conv.weight.detach().numpy()
        j_emb = np.asarray(jm.patch_embedding.conv.kernel[...])
    fan_in = (5 if shifted else 1) * cfg.in_channels * cfg.patch_size**2
    std = np.sqrt(1 / fan_in)
    for w in (t_emb, j_emb):
        assert abs(w.std() - std) < 0.05 * std and np.abs(w).max() <= 2 * std / 0.8796 + 1e-6
    assert np.all(tm.head.weight.detach().numpy() == 0)
    assert np.all(np.asarray(jm.head.kernel[...]) == 0)
    # The default keeps std 0.02 everywhere: the two schemes really differ.
    default = vt.ViT(dataclasses.replace(cfg, weight_init="trunc_normal"))
    assert default.blks[0].mlp.dense1.weight.std() < 0.02 < tm.blks[0].mlp.dense1.weight.std() / 3


def test_both_sides_use_the_exact_gelu():
    x = np.linspace(-3, 3, 101).astype(np.float32)
    t = vt.ViTMLP(1, 1, 0.0)
    with torch.no_grad():
        t.dense1.weight.fill_(1.0), t.dense2.weight.fill_(1.0)
    assert t.dense1.bias.abs().sum() == 0 and t.dense2.bias.abs().sum() == 0  # zero-initialised
    j = vj.ViTMLP(1, 1, 0.0, rngs=nnx.Rngs(0))
    j.dense1.kernel[...] = jnp.ones((1, 1))
    j.dense2.kernel[...] = jnp.ones((1, 1))
    exact = np.asarray(jax.nn.gelu(jnp.asarray(x), approximate=False))
    tanh = np.asarray(jax.nn.gelu(jnp.asarray(x)))
    assert np.abs(exact - tanh).max() > 1e-4  # the two GELUs really differ
    np.testing.assert_allclose(t(torch.from_numpy(x)[None, :, None]).detach().numpy().ravel(), exact, atol=1e-6)
    np.testing.assert_allclose(np.asarray(j(jnp.asarray(x)[None, :, None])).ravel(), exact, atol=1e-6)


def test_dropout_is_random_in_training_and_off_in_eval():
    cfg = ViTConfig.tiny(emb_dropout=0.5, blk_dropout=0.5)
    tm, jm = vt.ViT(cfg), vj.ViT(cfg, rngs=nnx.Rngs(0))
    xt, xj = images(cfg, "NCHW"), images(cfg, "NHWC")
    tm.train()
    jm.train()
    assert not torch.equal(tm(xt), tm(xt))
    assert not np.array_equal(np.asarray(jm(xj)), np.asarray(jm(xj)))
    tm.eval()
    jm.eval()
    assert torch.equal(tm(xt), tm(xt))
    assert np.array_equal(np.asarray(jm(xj)), np.asarray(jm(xj)))


@pytest.mark.parametrize("shape, message", [
    ((B, 16, 16), r"Expected a 4-D batch of images \(B, 1, 16, 16\).*3 dimensions.*x\[None\]"),
    ((B, 3, 16, 16), r"Expected 1 channel\(s\).*got 3"),
    ((B, 1, 28, 28), r"Expected 16x16 images.*got 28x28.*Resize"),
    ((B, 16, 16, 1), r"NHWC layout.*PyTorch \(vitlib.torch\) expects images as \(B, C, H, W\).*permute"),
])
def test_torch_bad_input_raises_a_sentence(shape, message):
    with pytest.raises(ValueError, match=message):
        vt.ViT(ViTConfig.tiny())(torch.zeros(shape))


@pytest.mark.parametrize("shape, message", [
    ((B, 16, 16), r"Expected a 4-D batch of images \(B, 16, 16, 1\)"),
    ((B, 16, 16, 3), r"Expected 1 channel\(s\).*got 3"),
    ((B, 28, 28, 1), r"Expected 16x16 images.*got 28x28"),
    ((B, 1, 16, 16), r"NCHW layout.*JAX \(vitlib.jax\) expects images as \(B, H, W, C\).*transpose"),
])
def test_jax_bad_input_raises_a_sentence(shape, message):
    with pytest.raises(ValueError, match=message):
        vj.ViT(ViTConfig.tiny(), rngs=nnx.Rngs(0))(jnp.zeros(shape))


def test_rgb_layout_errors_name_the_layout():
    cfg = ViTConfig.tiny(in_channels=3)
    with pytest.raises(ValueError, match="NHWC layout"):
        vt.ViT(cfg)(torch.zeros(B, 16, 16, 3))
    with pytest.raises(ValueError, match="NCHW layout"):
        vj.ViT(cfg, rngs=nnx.Rngs(0))(jnp.zeros((B, 3, 16, 16)))
