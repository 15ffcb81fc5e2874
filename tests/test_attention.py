"""vitlib.attention on hand-made attention weights whose answers are known, on the real models'
weights in both frameworks, and on bad input; the plots and the explorer without a browser."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from vitlib import ViTConfig
from vitlib.attention import (STATIC_NOTE, AttentionExplorer, attention_rollout, cls_attention,
                              filter_components, plot_cls_attention, plot_filter_components,
                              plot_overlays, plot_position_similarity, position_similarity,
                              rollout_matrix)

rng = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def softmax_rows(scores):
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def random_attention(L=3, B=2, Hd=4, N=10):
    """L per-block arrays (B, Hd, N, N) of softmax rows, as a model returns them."""
    return [softmax_rows(rng.normal(size=(B, Hd, N, N))) for _ in range(L)]


def eye(L, B, Hd, N):
    return [np.broadcast_to(np.eye(N), (B, Hd, N, N)).copy() for _ in range(L)]


# Rollout.

@pytest.mark.parametrize("residual", [True, False])
def test_identity_attention_rolls_out_to_the_identity(residual):
    R = rollout_matrix(eye(3, 2, 4, 10), residual=residual)
    assert R.shape == (2, 10, 10)
    np.testing.assert_allclose(R, np.broadcast_to(np.eye(10), (2, 10, 10)), atol=1e-12)
    # <cls> attends only to itself, so no patch reaches it.
    np.testing.assert_allclose(attention_rollout(eye(3, 2, 4, 10), residual), 0, atol=1e-12)


def test_rollout_rows_sum_to_one():
    for residual in (True, False):
        R = rollout_matrix(random_attention(L=5), residual)
        np.testing.assert_allclose(R.sum(axis=-1), 1, atol=1e-12)
        assert R.min() >= 0


def test_a_uniform_first_layer_makes_the_rollout_uniform():
    # R = A_L ... A_2 U, and any attention matrix times U is U (its rows sum to 1): whatever
    # the later layers do, every output token draws equally from every input token.
    N = 10
    uniform = np.full((2, 4, N, N), 1 / N)
    R = rollout_matrix([uniform] + random_attention(L=3, N=N), residual=False)
    np.testing.assert_allclose(R, 1 / N, atol=1e-12)
    # The same layer last is not absorbing: the order of the product matters.
    R_last = rollout_matrix(random_attention(L=3, N=N) + [uniform], residual=False)
    assert np.abs(R_last - 1 / N).max() > 1e-3


def test_rollout_by_hand():
    a1, a2 = random_attention(L=2, B=1, Hd=2, N=5)
    I = np.eye(5)
    A1 = (a1[0].mean(0) + I) / 2  # heads averaged, residual added, rows renormalised
    A2 = (a2[0].mean(0) + I) / 2
    np.testing.assert_allclose(rollout_matrix([a1, a2])[0], A2 @ A1, atol=1e-12)
    np.testing.assert_allclose(rollout_matrix([a1, a2], residual=False)[0],
                               a2[0].mean(0) @ a1[0].mean(0), atol=1e-12)
    np.testing.assert_allclose(attention_rollout([a1, a2])[0], (A2 @ A1)[0, 1:].reshape(2, 2))


def test_rollout_without_cls_averages_over_the_queries():
    att = random_attention(L=2, B=3, Hd=2, N=16)  # pool="mean": 4 x 4 patches, no <cls>
    maps = attention_rollout(att)
    assert maps.shape == (3, 4, 4)
    np.testing.assert_allclose(maps, rollout_matrix(att).mean(axis=1).reshape(3, 4, 4))
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1, atol=1e-12)  # a mean of rows


# The <cls> token's attention.

def test_cls_attention_shape_and_values():
    att = random_attention(L=3, B=2, Hd=4, N=10)  # grid 3: 9 patches + <cls>
    maps = cls_attention(att, grid=3)
    assert maps.shape == (2, 3, 4, 3, 3)  # (B, L, Hd, grid, grid)
    for b, layer, h in [(0, 0, 0), (1, 2, 3), (0, 1, 2)]:
        np.testing.assert_array_equal(maps[b, layer, h], att[layer][b, h, 0, 1:].reshape(3, 3))
    np.testing.assert_allclose(maps.sum(axis=(-2, -1)) + np.stack(att, 1)[..., 0, 0], 1)


def test_cls_attention_on_one_patch_is_one_pixel_of_the_grid():
    w = np.zeros((1, 1, 10, 10))
    w[..., np.arange(10), np.arange(10)] = 1  # every token attends to itself...
    w[0, 0, 0] = 0
    w[0, 0, 0, 6] = 1  # ...but <cls> only to token 6, patch 5: row 1, column 2 of the 3 x 3 grid
    maps = cls_attention([w], grid=3)[0, 0, 0]
    expected = np.zeros((3, 3))
    expected[1, 2] = 1
    np.testing.assert_array_equal(maps, expected)


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_real_model_weights(framework):
    cfg = ViTConfig.tiny()  # 16 x 16, patch 4: grid 4, N = 17
    if framework == "torch":
        import vitlib.torch as vt
        torch.manual_seed(0)
        model = vt.ViT(cfg).eval()
        with torch.no_grad():
            _, att = model.forward_features(torch.randn(2, 1, 16, 16), return_attention=True)
        att = [a.numpy() for a in att]
        pos = model.pos_embedding.detach().numpy()
        filters = model.patch_embedding.conv.weight.detach().numpy().reshape(cfg.num_hiddens, -1)
    else:
        import jax
        from flax import nnx

        import vitlib.jax as vj
        model = vj.ViT(cfg, rngs=nnx.Rngs(0))
        model.eval()
        _, att = model.forward_features(jax.random.normal(jax.random.key(0), (2, 16, 16, 1)),
                                        return_attention=True)
        att = [np.asarray(a) for a in att]
        pos = np.asarray(model.pos_embedding[...])
        kernel = np.asarray(model.patch_embedding.conv.kernel[...])  # (P, P, C, D)
        filters = kernel.transpose(3, 2, 0, 1).reshape(cfg.num_hiddens, -1)
    assert cls_attention(att, cfg.grid_size).shape == (2, cfg.num_blks, cfg.num_heads, 4, 4)
    assert attention_rollout(att).shape == (2, 4, 4)
    assert position_similarity(pos, has_cls=True).shape == (16, 16)
    components, share = filter_components(filters, 5)
    assert components.shape == (5, 4, 4) and share.shape == (5,)


# Bad attention input.

@pytest.mark.parametrize("bad, match", [
    ([], "empty list"),
    ("weights", "list of per-block NumPy arrays"),
    ([np.full((2, 4, 10), 0.1)], r"\(B, Hd, N, N\), got shape \(2, 4, 10\)"),
    ([np.full((1, 2, 10, 10), 0.1), np.full((1, 2, 5, 5), 0.2)], "same shape"),
    ([np.zeros((1, 2, 10, 10))], "rows that sum to 1"),  # scores, not weights
    ([rng.normal(size=(1, 2, 10, 10))], "not the scores"),
])
def test_bad_attention_is_refused_with_a_sentence(bad, match):
    with pytest.raises(ValueError, match=match):
        rollout_matrix(bad)


def test_cls_attention_needs_a_cls_token_and_the_right_grid():
    with pytest.raises(ValueError, match="pool='mean'. Use attention_rollout"):
        cls_attention(random_attention(N=9), grid=3)
    with pytest.raises(ValueError, match="does not fit a 4 x 4 patch grid"):
        cls_attention(random_attention(N=10), grid=4)
    with pytest.raises(ValueError, match="positive integer"):
        cls_attention(random_attention(N=10), grid=0)
    with pytest.raises(ValueError, match="neither a square nor a square plus 1"):
        attention_rollout(random_attention(N=7))


# Position embeddings.

def test_position_similarity_diagonal_shape_and_values():
    pos = rng.normal(size=(1, 17, 8))  # <cls> + 4 x 4 patches, D = 8
    s = position_similarity(pos, has_cls=True)
    assert s.shape == (16, 16)
    np.testing.assert_allclose(np.diag(s), 1, atol=1e-12)
    np.testing.assert_allclose(s, s.T, atol=1e-12)
    assert np.all(np.abs(s) <= 1 + 1e-12)
    # The <cls> row is left out: patch 0 is token 1.
    e1, e2 = pos[0, 1], pos[0, 2]
    assert s[0, 1] == pytest.approx(e1 @ e2 / np.linalg.norm(e1) / np.linalg.norm(e2))
    # Known angles, no <cls> (pool="mean"): 2 x 2 patches.
    s = position_similarity(np.array([[1.0, 0], [0, 2], [3, 3], [-1, 0]]), has_cls=False)
    assert s[0, 1] == pytest.approx(0) and s[0, 2] == pytest.approx(2**-0.5)
    assert s[0, 3] == pytest.approx(-1)


def test_position_similarity_bad_input():
    with pytest.raises(ValueError, match=r"square number of patch embeddings, got 15 \(N = 16, "
                                         r"has_cls=True\)\. Check has_cls"):
        position_similarity(rng.normal(size=(1, 16, 8)), has_cls=True)
    with pytest.raises(ValueError, match=r"\(1, N, D\) or \(N, D\)"):
        position_similarity(rng.normal(size=(2, 17, 8)), has_cls=True)
    with pytest.raises(ValueError, match="True or False"):
        position_similarity(rng.normal(size=(17, 8)), has_cls="cls")
    with pytest.raises(ValueError, match="zero vector"):
        position_similarity(np.zeros((4, 8)), has_cls=False)


# Principal components of the filters.

def test_filter_components_are_orthonormal_and_ordered_by_variance():
    F, D = 16, 300  # 4 x 4 patches, 300 filters
    basis, _ = np.linalg.qr(rng.normal(size=(F, F)))  # known orthonormal directions
    spread = np.array([8.0, 4.0, 2.0, 1.0] + [0.1] * (F - 4))
    filters = (rng.normal(size=(D, F)) * spread) @ basis.T + 5.0  # + a mean, removed by PCA
    components, share = filter_components(filters, k=6)
    assert components.shape == (6, 4, 4)
    flat = components.reshape(6, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(6), atol=1e-10)
    assert np.all(np.diff(share) <= 0) and 0 < share.sum() <= 1
    for i in range(3):  # the clearly separated directions are found, up to their sign
        assert abs(flat[i] @ basis[:, i]) > 0.98
    # The sign convention: the largest entry of each component is positive.
    assert np.all(flat[np.arange(6), np.abs(flat).argmax(1)] > 0)
    # Variance shares: the projections' variances, over the total.
    centred = filters - filters.mean(0)
    np.testing.assert_allclose(share, (centred @ flat.T).var(0) / centred.var(0).sum(), rtol=1e-8)


def test_filter_components_in_both_layouts_agree():
    D, C, P = 32, 3, 4
    weight = rng.normal(size=(D, C, P, P))  # a PyTorch conv weight
    kernel = weight.transpose(2, 3, 1, 0)  # the same filters as a Flax kernel (P, P, C, D)
    a, sa = filter_components(weight.reshape(D, -1), 4, channels=C)
    b, sb = filter_components(kernel.transpose(3, 2, 0, 1).reshape(D, -1), 4, channels=C)
    assert a.shape == (4, P, P, C)
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(sa, sb)


@pytest.mark.parametrize("args, match", [
    ((np.ones((8, 3, 4, 4)), 2), r"\(D, C\*P\*P\) matrix"),
    ((rng.normal(size=(8, 15)), 2), "not 1 times a square"),
    ((rng.normal(size=(8, 16)), 0), "between 1 and min"),
    ((rng.normal(size=(8, 16)), 9), "between 1 and min"),
    ((np.ones((8, 16)), 2), "All filters are equal"),
])
def test_filter_components_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        filter_components(*args)


# Plots.

def test_plots_draw_the_expected_panels():
    att = random_attention(L=3, B=4, Hd=2, N=17)
    images = rng.random((4, 28, 28))
    fig = plot_cls_attention(images[0], cls_attention(att, 4)[0])
    assert len(fig.axes) == 3 * (2 + 1)  # layers x (mean + heads)
    fig = plot_overlays(images, attention_rollout(att), titles=list("abcd"), ncols=3)
    assert len([ax for ax in fig.axes if ax.axison]) == 2 * 4  # each image, then its overlay
    fig = plot_position_similarity(position_similarity(rng.normal(size=(17, 8)), True))
    assert len(fig.axes) == 16 + 1  # a tile per patch and a colour bar
    components, share = filter_components(rng.normal(size=(32, 49)), 5)
    fig = plot_filter_components(components, share, ncols=4)
    assert [ax.get_title() for ax in fig.axes[:2]] == [f"PC 1: {share[0]:.0%}",
                                                       f"PC 2: {share[1]:.0%}"]
    with pytest.raises(ValueError, match="one map"):
        plot_overlays(images, attention_rollout(att)[:3])
    with pytest.raises(ValueError, match=r"\(L, Hd, grid, grid\)"):
        plot_cls_attention(images[0], cls_attention(att, 4))  # all images instead of one


# The explorer.

def explorer(**kw):
    att = random_attention(L=3, B=5, Hd=2, N=17)
    images, labels = rng.random((5, 28, 28)), np.array([0, 1, 2, 3, 4])
    predictions = np.array([0, 1, 5, 3, 4])  # image 2 is wrong
    fn = lambda i: [a[i:i + 1] for a in att]  # (1, Hd, N, N) per block
    return AttentionExplorer(images, labels, predictions, fn, **kw), att


def test_explorer_text_follows_the_controls():
    ex, att = explorer()
    assert ex.state() == (0, 3, "mean")  # the last layer, the mean of the heads
    assert ex.text.splitlines()[0] == "image #0: true T-shirt/top, predicted T-shirt/top (correct)"
    ex.image_dropdown.value = 2
    assert "predicted Sandal (wrong)" in ex.text
    ex.layer_slider.value, ex.head_buttons.value = 1, "2"
    assert ex.drawn == (2, 1, "2")
    # The patch named in the text is the argmax of <cls>'s row in block 1, head 2.
    best = att[0][2, 1, 0, 1:].argmax()
    assert f"row {best // 4 + 1}, column {best % 4 + 1} (weight {att[0][2, 1, 0, 1:].max():.2f}" \
        in ex.text.splitlines()[1]
    assert f"keeps {att[0][2, 1, 0, 0]:.2f}" in ex.text


def test_explorer_static_outputs_and_updates_in_place():
    InteractiveShell.instance()  # display() needs an IPython shell, as in a kernel
    ex, _ = explorer()
    with capture_output() as shown:
        ex.display()
    controls, figure, text = shown.outputs
    assert controls.data["text/plain"] == STATIC_NOTE  # what GitHub and nbval show
    assert controls.data["application/vnd.jupyter.widget-view+json"]["model_id"] == \
        ex.controls.model_id
    assert figure.data["image/png"] and "layer 3, head mean" in figure.data["text/plain"]
    assert text.data["text/plain"] == ex.text
    with capture_output() as updated:
        ex.head_buttons.value = "1"
    new_figure, new_text = updated.outputs
    assert new_figure.update and new_figure.transient["display_id"] == \
        figure.transient["display_id"]
    assert "layer 3, head 1:" in new_text.data["text/plain"]


def test_explorer_bad_input():
    ex, att = explorer()
    images, labels = rng.random((5, 28, 28)), np.arange(5)
    fn = lambda i: [a[i:i + 1] for a in att]
    with pytest.raises(ValueError, match="as many labels and predictions as images"):
        AttentionExplorer(images, labels[:4], labels, fn)
    with pytest.raises(ValueError, match="layer between 1 and 3"):
        AttentionExplorer(images, labels, labels, fn, layer=4)
    with pytest.raises(ValueError, match="head 'mean' or 1 .. 2"):
        AttentionExplorer(images, labels, labels, fn, head=3)
    with pytest.raises(ValueError, match="one image"):
        AttentionExplorer(images, labels, labels, lambda i: att)  # the whole batch
    with pytest.raises(ValueError, match="as a function"):
        AttentionExplorer(images, labels, labels, att)
