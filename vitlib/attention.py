"""Inside a trained Vision Transformer: attention maps, attention rollout, position embeddings
and patch-embedding filters, with their plots and an interactive explorer.

- `cls_attention`: what the <cls> token, whose final state the head classifies, attends to in
  every block and head, laid back on the (H/P, W/P) patch grid.
- `attention_rollout`: the attention of all blocks combined (Abnar & Zuidema 2020, "Quantifying
  Attention Flow in Transformers"), the method of the ViT paper's figure 6 and appendix D.8:
  average the heads, add the identity for the residual connection, renormalise the rows and
  multiply the blocks' matrices together.
- `position_similarity`: the cosine similarity of the learned position embeddings, each patch
  against all others (Dosovitskiy et al. 2021, figure 7 centre).
- `filter_components`: the leading principal components of the patch-embedding filters
  (figure 7 left).

Framework-free: everything here receives NumPy arrays (convert with `np.asarray(x)` in JAX,
`x.detach().cpu().numpy()` in PyTorch) and draws with matplotlib and ipywidgets.
Shapes: B batch, L blocks (layers), Hd heads, N tokens, D hidden size, C channels, P patch size;
the patch grid is (H/P, W/P) = (grid, grid).
"""

import base64
import io
import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vitlib.widgets import show_live

CMAP = "inferno"  # attention maps: dark = little attention, bright = much
ROW_TOL = 1e-3  # attention rows are softmax outputs: they sum to 1 up to float rounding
STATIC_NOTE = ("[Attention explorer controls: an image chooser and sliders for the layer and the "
               "head. They need a running Jupyter kernel (run the notebook in JupyterLab); the "
               "figure and the text below are the last state they produced.]")


# Checks and helpers.
def _stack(attentions):
    """Per-block attention weights, L arrays (B, Hd, N, N) (what `forward_features(x,
    return_attention=True)` returns) or one array (L, B, Hd, N, N) -> float64 (B, L, Hd, N, N)."""
    if isinstance(attentions, np.ndarray):
        layers = list(attentions) if attentions.ndim == 5 else [attentions]
    elif isinstance(attentions, (list, tuple)):
        layers = list(attentions)
    else:
        raise ValueError(f"Expected attention weights as a list of per-block NumPy arrays "
                         f"(B, Hd, N, N), got {type(attentions).__name__}. Convert the list "
                         f"from forward_features(x, return_attention=True) with np.asarray.")
    if not layers:
        raise ValueError("Expected attention weights of at least one block, got an empty list. "
                         "Call forward_features(x, return_attention=True).")
    try:
        layers = [np.asarray(a, dtype=np.float64) for a in layers]
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"Expected NumPy arrays of attention weights, got something NumPy "
                         f"cannot read ({e}). In PyTorch use w.detach().cpu().numpy().") from e
    first = layers[0].shape
    for i, a in enumerate(layers):
        if a.ndim != 4 or a.shape[-1] != a.shape[-2]:
            raise ValueError(f"Expected every block's attention weights as (B, Hd, N, N), got "
                             f"shape {a.shape} for block {i}. For one image keep the batch axis: "
                             f"w[None].")
        if a.shape != first:
            raise ValueError(f"Expected the same shape (B, Hd, N, N) for every block, got "
                             f"{first} for block 0 and {a.shape} for block {i}.")
    w = np.stack(layers, axis=1)  # L x (B, Hd, N, N) -> (B, L, Hd, N, N)
    if not np.all(np.isfinite(w)) or w.min() < 0 or \
            np.abs(w.sum(-1) - 1).max() > ROW_TOL:
        raise ValueError(f"Expected attention weights: non-negative rows that sum to 1 (the "
                         f"softmax over the keys), got rows summing to {w.sum(-1).min():.4g} .. "
                         f"{w.sum(-1).max():.4g} and values from {w.min():.4g}. Pass the weights "
                         f"returned by return_attention=True, not the scores.")
    return w


def _tokens(N, grid=None):
    """(has_cls, grid) for a sequence of N tokens: grid x grid patches, plus a <cls> token
    first when N = grid^2 + 1."""
    if grid is not None:
        if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 1:
            raise ValueError(f"Expected grid, the patches along one side (img_size // "
                             f"patch_size, cfg.grid_size), as a positive integer, got {grid!r}.")
        if N == grid * grid + 1:
            return True, int(grid)
        if N == grid * grid:
            return False, int(grid)
        raise ValueError(f"Attention over N = {N} tokens does not fit a {grid} x {grid} patch "
                         f"grid (expected {grid * grid} patches, plus 1 with a <cls> token). "
                         f"Pass grid=cfg.grid_size of the model that made the weights.")
    if N > 1 and math.isqrt(N - 1) ** 2 == N - 1:
        return True, math.isqrt(N - 1)
    if math.isqrt(N) ** 2 == N:
        return False, math.isqrt(N)
    raise ValueError(f"Expected N = grid^2 patch tokens (plus one <cls> token), got N = {N}, "
                     f"which is neither a square nor a square plus 1.")


def _display_image(image):
    """An image (H, W) or (H, W, 3), uint8 or any float range, scaled to [0, 1] for imshow."""
    x = np.asarray(image, dtype=np.float64)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if not (x.ndim == 2 or (x.ndim == 3 and x.shape[-1] == 3)):
        raise ValueError(f"Expected an image (H, W) or (H, W, 3), got shape {x.shape}. Drop "
                         f"the batch and channel axes, e.g. x[0, 0] (NCHW) or x[0, ..., 0] (NHWC).")
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _check_maps(maps, ndim, what):
    m = np.asarray(maps, dtype=np.float64)
    if m.ndim != ndim or m.shape[-1] != m.shape[-2]:
        raise ValueError(f"Expected {what}, got shape {m.shape}.")
    return m


# The computations.
def cls_attention(attentions, grid):
    """The <cls> token's attention over the patches, per image, block and head.

    Row 0 of each (N, N) matrix is what the <cls> query takes from every key; its entries for
    the grid^2 patch keys, reshaped to the patch grid, are the map drawn over the image. They
    sum to 1 minus what <cls> keeps from itself.

    Args:
        attentions: per-block weights, L arrays (B, Hd, N, N), as returned by
            `forward_features(x, return_attention=True)` and converted to NumPy.
        grid: patches along one side, cfg.grid_size.

    Returns:
        (B, L, Hd, grid, grid) array.
    """
    w = _stack(attentions)  # (B, L, Hd, N, N)
    has_cls, grid = _tokens(w.shape[-1], grid)
    if not has_cls:
        raise ValueError(f"These weights cover N = {w.shape[-1]} = {grid} x {grid} patch tokens "
                         f"and no <cls> token: the model was built with pool='mean'. Use "
                         f"attention_rollout, which averages over the query tokens instead.")
    B, L, Hd = w.shape[:3]
    return w[..., 0, 1:].reshape(B, L, Hd, grid, grid)  # row of <cls>, columns of the patches


def rollout_matrix(attentions, residual=True):
    """The attention of all blocks combined: R = A_L ... A_2 A_1 (Abnar & Zuidema 2020).

    Each block's A is its weights averaged over the heads; with `residual`, the identity is
    added and the rows renormalised, A = (A + I) / 2, because the residual connection
    `x + attention(x)` carries every token's own state past the attention. R[i, j] is then how
    much of input token j reaches output token i; every row of R sums to 1.

    Args:
        attentions: per-block weights, L arrays (B, Hd, N, N).
        residual: account for the residual connections (the method of the paper); False
            multiplies the raw head-averaged matrices.

    Returns:
        (B, N, N) array.
    """
    w = _stack(attentions).mean(axis=2)  # (B, L, Hd, N, N) -> (B, L, N, N): average the heads
    B, L, N, _ = w.shape
    eye = np.eye(N)
    if residual:
        w = w + eye
        w = w / w.sum(axis=-1, keepdims=True)  # rows sum to 1 again
    R = np.broadcast_to(eye, (B, N, N))
    for layer in range(L):
        R = w[:, layer] @ R  # later blocks act on what earlier ones produced: A_l @ R
    return R


def attention_rollout(attentions, residual=True):
    """The rollout attention of every image over its patches, on the patch grid.

    For a model with a <cls> token, row 0 of `rollout_matrix` over the patch columns: how much
    of each patch reaches the token the head classifies (the maps of the ViT paper's figure 6).
    For a pool="mean" model, which classifies the mean of all tokens, the rows averaged over
    the query tokens. The values are not rescaled; plots normalise each map to its maximum.

    Args:
        attentions: per-block weights, L arrays (B, Hd, N, N).
        residual: see `rollout_matrix`.

    Returns:
        (B, grid, grid) array.
    """
    R = rollout_matrix(attentions, residual)  # (B, N, N)
    has_cls, grid = _tokens(R.shape[-1])
    flow = R[:, 0, 1:] if has_cls else R.mean(axis=1)  # (B, grid^2)
    return flow.reshape(len(R), grid, grid)


def position_similarity(pos_embedding, has_cls):
    """Cosine similarity of the patch position embeddings, every patch against every other.

    Row i, reshaped to (grid, grid), is one small map of the ViT paper's figure 7 (centre):
    a model that learned the 2-D layout gives high similarity to patch i's own row, column and
    neighbours.

    Args:
        pos_embedding: the learned position embedding, (1, N, D) or (N, D), e.g.
            model.pos_embedding.
        has_cls: whether token 0 is the <cls> token (cfg.pool == "cls"); it is left out.

    Returns:
        (grid^2, grid^2) array with ones on the diagonal.
    """
    E = np.asarray(pos_embedding, dtype=np.float64)
    if E.ndim == 3 and E.shape[0] == 1:
        E = E[0]  # (1, N, D) -> (N, D)
    if E.ndim != 2:
        raise ValueError(f"Expected the position embedding as (1, N, D) or (N, D), got shape "
                         f"{E.shape}.")
    if not isinstance(has_cls, (bool, np.bool_)):
        raise ValueError(f"Expected has_cls as True or False (cfg.pool == 'cls'), got "
                         f"{has_cls!r}.")
    E = E[1:] if has_cls else E  # (N, D) -> (grid^2, D)
    n = len(E)
    if n == 0 or math.isqrt(n) ** 2 != n:
        raise ValueError(f"Expected a square number of patch embeddings, got {n} (N = "
                         f"{len(E) + bool(has_cls)}, has_cls={has_cls}). Check has_cls: "
                         f"True for pool='cls' models, False for pool='mean'.")
    norms = np.linalg.norm(E, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("A position embedding is the zero vector, so its cosine similarity is "
                         "undefined. Pass a trained or initialised embedding.")
    E = E / norms
    return E @ E.T  # (grid^2, D) @ (D, grid^2)


def filter_components(filters, k, channels=1):
    """The leading k principal components of the patch-embedding filters, as patches.

    The patch embedding multiplies every flattened patch by D filters of C*P*P weights. Their
    principal components (PCA of the D filters, centred) show the few patterns the filters are
    made of (the ViT paper's figure 7, left). Each component's sign is chosen so that its
    largest entry is positive, so both frameworks draw the same picture.

    Args:
        filters: (D, C*P*P) in (C, P, P) order: PyTorch `conv.weight.reshape(D, -1)`, JAX
            `conv.kernel.transpose(3, 2, 0, 1).reshape(D, -1)` (the kernel is (P, P, C, D)).
        k: how many components, 1 .. min(D, C*P*P).
        channels: C, the image channels.

    Returns:
        components (k, P, P) for C = 1, (k, P, P, C) otherwise, orthonormal as vectors; and the
        share of the filters' variance each one explains, (k,), in decreasing order.
    """
    X = np.asarray(filters, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"Expected the filters as a (D, C*P*P) matrix, got shape {X.shape}. "
                         f"PyTorch: conv.weight.reshape(D, -1); JAX: conv.kernel.transpose(3, 2, "
                         f"0, 1).reshape(D, -1).")
    D, F = X.shape
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"Expected channels as a positive integer, got {channels!r}.")
    P = math.isqrt(F // channels)
    if channels * P * P != F:
        raise ValueError(f"Expected C*P*P = {channels}*P*P columns, got {F}, which is not "
                         f"{channels} times a square. Check channels= and the reshape.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= min(D, F):
        raise ValueError(f"Expected k between 1 and min(D, C*P*P) = {min(D, F)}, got {k!r}.")
    Xc = X - X.mean(axis=0)  # centre: PCA describes the spread of the filters around their mean
    _, S, Vt = np.linalg.svd(Xc, full_matrices=False)  # rows of Vt: directions, by decreasing S
    variance = S**2
    if variance.sum() == 0:
        raise ValueError("All filters are equal, so they have no principal components.")
    comps = Vt[:k]  # (k, C*P*P)
    biggest = comps[np.arange(k), np.abs(comps).argmax(axis=1)]
    comps = comps * np.where(biggest < 0, -1.0, 1.0)[:, None]  # a sign convention, see above
    comps = comps.reshape(k, channels, P, P).transpose(0, 2, 3, 1)  # -> (k, P, P, C)
    return (comps[..., 0] if channels == 1 else comps), variance[:k] / variance.sum()


# Plots. Each returns the matplotlib Figure (pyplot's, so a notebook shows it).
def overlay(ax, image, attention, alpha=0.6, title=None):
    """Draw `image` and an attention map stretched over it, normalised to its maximum.

    Args:
        ax: a matplotlib Axes.
        image: (H, W) or (H, W, 3), any range (scaled for display).
        attention: (grid, grid) non-negative weights; each cell covers one patch.
        alpha: opacity of the map, 0 (image only) to 1 (map only).
        title: the axes' title.
    """
    img = _display_image(image)
    a = _check_maps(attention, 2, "an attention map (grid, grid)")
    H, W = img.shape[:2]
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    top = a.max()
    ax.imshow(a / top if top > 0 else a, cmap=CMAP, vmin=0, vmax=1, alpha=alpha,
              extent=(-0.5, W - 0.5, H - 0.5, -0.5), interpolation="nearest")
    ax.set(xticks=[], yticks=[])
    if title:
        ax.set_title(title, fontsize=9)


def plot_cls_attention(image, maps, alpha=0.6, title=None):
    """One image under the <cls> attention of every block (rows) and head (columns).

    Args:
        image: (H, W) or (H, W, 3).
        maps: (L, Hd, grid, grid), one image of `cls_attention`'s output.
        alpha: opacity of the maps.
        title: the figure's title.
    """
    m = _check_maps(maps, 4, "maps (L, Hd, grid, grid), one image of cls_attention(...)")
    L, Hd = m.shape[:2]
    fig, axes = plt.subplots(L, Hd + 1, figsize=(1.6 * (Hd + 1), 1.6 * L + 0.5), squeeze=False,
                             layout="constrained")
    for layer in range(L):
        overlay(axes[layer, 0], image, m[layer].mean(axis=0), alpha)
        axes[layer, 0].set_ylabel(f"layer {layer + 1}", fontsize=9)
        for h in range(Hd):
            overlay(axes[layer, h + 1], image, m[layer, h], alpha)
            axes[layer, h + 1].text(0.03, 0.03, f"max {m[layer, h].max():.2f}", color="white",
                                    fontsize=7, transform=axes[layer, h + 1].transAxes)
    axes[0, 0].set_title("mean of heads", fontsize=9)
    for h in range(Hd):
        axes[0, h + 1].set_title(f"head {h + 1}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_overlays(images, maps, titles=None, alpha=0.6, ncols=8):
    """Images (top row) and the same images under their attention maps (row below).

    Args:
        images: (M, H, W) or (M, H, W, 3).
        maps: (M, grid, grid), e.g. `attention_rollout`'s output.
        titles: M strings over the images, or None.
        alpha: opacity of the maps.
        ncols: images per row pair; more images wrap onto further pairs of rows.
    """
    m = _check_maps(maps, 3, "maps (M, grid, grid), e.g. attention_rollout(...)")
    if len(images) != len(m) or (titles is not None and len(titles) != len(m)):
        raise ValueError(f"Expected one map (and title) per image, got {len(images)} images, "
                         f"{len(m)} maps and {'no' if titles is None else len(titles)} titles.")
    cols = min(ncols, len(m))
    rows = -(-len(m) // cols)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(1.5 * cols, 3.3 * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    for i in range(len(m)):
        r, c = divmod(i, cols)
        img = _display_image(images[i])
        top, bottom = axes[2 * r, c], axes[2 * r + 1, c]
        top.imshow(img, cmap="gray" if img.ndim == 2 else None)
        top.set_axis_on(), top.set(xticks=[], yticks=[])
        if titles is not None:
            top.set_title(titles[i], fontsize=8)
        overlay(bottom, images[i], m[i], alpha)
        bottom.set_axis_on()
    return fig


def plot_position_similarity(similarity, title=None):
    """A grid of small maps: tile (r, c) shows the similarity of patch (r, c)'s position
    embedding to those of all patches, laid out on the patch grid (figure 7 centre).

    Args:
        similarity: (grid^2, grid^2), from `position_similarity`.
        title: the figure's title.
    """
    s = _check_maps(similarity, 2, "a (grid^2, grid^2) similarity matrix")
    grid = math.isqrt(len(s))
    if grid * grid != len(s):
        raise ValueError(f"Expected a (grid^2, grid^2) matrix, got {s.shape}.")
    size = min(1.0, 9 / grid)
    fig, axes = plt.subplots(grid, grid, figsize=(size * grid + 1, size * grid + 0.4),
                             squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        im = ax.imshow(s[i].reshape(grid, grid), cmap="viridis", vmin=-1, vmax=1)
        ax.set(xticks=[], yticks=[])
    for r in range(grid):
        axes[r, 0].set_ylabel(str(r + 1), rotation=0, labelpad=8, fontsize=8)
        axes[-1, r].set_xlabel(str(r + 1), fontsize=8)
    fig.supylabel("input patch row", fontsize=9)
    fig.supxlabel("input patch column", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.6, label="cosine similarity")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_filter_components(components, variance_ratio, ncols=8, title=None):
    """The principal components of the patch-embedding filters as small images.

    Args:
        components, variance_ratio: the output of `filter_components`.
        ncols: components per row.
        title: the figure's title.
    """
    c = np.asarray(components, dtype=np.float64)
    if c.ndim not in (3, 4) or len(c) != len(variance_ratio):
        raise ValueError(f"Expected components (k, P, P) or (k, P, P, C) and k variance shares, "
                         f"got shapes {c.shape} and {np.shape(variance_ratio)}.")
    cols = min(ncols, len(c))
    rows = -(-len(c) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols, 1.35 * rows + 0.3), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    for i, ax in enumerate(axes.flat[:len(c)]):
        if c.ndim == 3:  # grey: a diverging map, 0 in the middle, so the sign is visible
            v = np.abs(c[i]).max()
            ax.imshow(c[i], cmap="RdBu_r", vmin=-v, vmax=v)
        else:
            ax.imshow(_display_image(c[i]))
        ax.set_title(f"PC {i + 1}: {variance_ratio[i]:.0%}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


# The explorer.
def _patch_map(w, grid, has_cls):
    """One head's (N, N) weights (or a mean of heads) -> what the classified token draws from
    each patch, (grid, grid): the <cls> row, or the mean over the queries for pool='mean'."""
    row = w[0, 1:] if has_cls else w.mean(axis=0)
    return row.reshape(grid, grid)


class AttentionExplorer:
    """Choose an image, a layer and a head with widgets; see where the model looks.

    The figure shows the image, the classified token's attention in the chosen layer and head
    (or the mean of the heads) over it, the rollout over all layers, and the chosen head's full
    (N, N) matrix; the text says what the model predicted and which patch it attends to most.
    Show it with `display()`, or as a cell's last value. Without a widget frontend (GitHub,
    nbviewer, nbval) the figure and text of the current choice are shown as plain outputs.

    Args:
        images: (M, H, W) or (M, H, W, 3), as drawn (e.g. the uint8 test images).
        labels: (M,) true class ids.
        predictions: (M,) predicted class ids.
        attentions_fn: `attentions_fn(i)` -> the attention weights of image i, a list of L
            NumPy arrays (1, Hd, N, N) (forward_features on a batch of one image).
        class_names: names of the classes; Fashion-MNIST's by default.
        ids: the number shown for each image, e.g. its index in the test set; 0 .. M-1 by
            default.
        index, layer, head: the starting image (0-based), layer (1 .. L, default the last) and
            head (1 .. Hd, or "mean").
        alpha: opacity of the maps.
    """

    def __init__(self, images, labels, predictions, attentions_fn, class_names=None, ids=None,
                 index=0, layer=None, head="mean", alpha=0.6):
        import ipywidgets as w

        from vitlib.data import FASHION_MNIST_CLASSES

        self.images = np.asarray(images)
        self.labels = np.asarray(labels).astype(int)
        self.predictions = np.asarray(predictions).astype(int)
        M = len(self.images)
        if M == 0 or len(self.labels) != M or len(self.predictions) != M:
            raise ValueError(f"Expected as many labels and predictions as images (at least one), "
                             f"got {M} images, {len(self.labels)} labels and "
                             f"{len(self.predictions)} predictions.")
        if not callable(attentions_fn):
            raise ValueError(f"Expected attentions_fn as a function i -> list of (1, Hd, N, N) "
                             f"arrays, got {type(attentions_fn).__name__}.")
        self.class_names = tuple(class_names or FASHION_MNIST_CLASSES)
        if max(self.labels.max(), self.predictions.max()) >= len(self.class_names):
            raise ValueError(f"Expected class ids below {len(self.class_names)} (the number of "
                             f"class names), got up to "
                             f"{max(self.labels.max(), self.predictions.max())}.")
        self.ids = np.arange(M) if ids is None else np.asarray(ids)
        if len(self.ids) != M:
            raise ValueError(f"Expected one id per image, got {len(self.ids)} ids for {M} images.")
        if not 0 <= index < M:
            raise ValueError(f"Expected index between 0 and {M - 1}, got {index!r}.")
        self.attentions_fn, self.alpha = attentions_fn, alpha
        self._cache = {}
        L, Hd, N = self.weights(index).shape[:3]  # the first image tells the sizes
        self.has_cls, self.grid = _tokens(N)
        layer = L if layer is None else layer
        if layer not in range(1, L + 1):
            raise ValueError(f"Expected layer between 1 and {L}, got {layer!r}.")
        heads = ["mean"] + [str(h) for h in range(1, Hd + 1)]
        if str(head) not in heads:
            raise ValueError(f"Expected head 'mean' or 1 .. {Hd}, got {head!r}.")

        style, layout = {"description_width": "60px"}, w.Layout(width="380px")
        mark = lambda i: "right" if self.labels[i] == self.predictions[i] else "WRONG"
        self.image_dropdown = w.Dropdown(
            options=[(f"#{self.ids[i]}: {self.class_names[self.labels[i]]} -> "
                      f"{self.class_names[self.predictions[i]]} ({mark(i)})", i) for i in range(M)],
            value=index, description="image", style=style, layout=layout)
        self.layer_slider = w.IntSlider(value=layer, min=1, max=L, description="layer",
                                        continuous_update=False, style=style, layout=layout)
        self.head_buttons = w.ToggleButtons(options=heads, value=str(head), description="head",
                                            style={**style, "button_width": "48px"})
        for control in (self.image_dropdown, self.layer_slider, self.head_buttons):
            control.observe(self._on_change, names="value")
        self.controls = w.VBox([self.image_dropdown, self.layer_slider, self.head_buttons])
        self.controls.add_class("vitlib-attention-explorer")
        self.text, self.drawn, self._handles = "", None, None
        self.fig = Figure(figsize=(12, 3.4), dpi=72)
        FigureCanvasAgg(self.fig)  # not pyplot's: no second copy shown by %inline
        self.redraw()

    def weights(self, i):
        """Image i's attention weights, (L, Hd, N, N), computed once by attentions_fn."""
        if i not in self._cache:
            w = _stack(self.attentions_fn(i))  # (1, L, Hd, N, N)
            if len(w) != 1:
                raise ValueError(f"Expected attentions_fn(i) to return the weights of one image, "
                                 f"(1, Hd, N, N) per block, got a batch of {len(w)}.")
            self._cache[i] = w[0]
        return self._cache[i]

    def state(self):
        """(image index, layer 1..L, head "mean" or "1".."Hd") of the controls."""
        return self.image_dropdown.value, self.layer_slider.value, self.head_buttons.value

    def render(self):
        """Draw the figure for the current controls; return the text that goes with it."""
        i, layer, head = self.state()
        w = self.weights(i)  # (L, Hd, N, N)
        heads = w[layer - 1]  # (Hd, N, N)
        chosen = heads.mean(axis=0) if head == "mean" else heads[int(head) - 1]  # (N, N)
        attention = _patch_map(chosen, self.grid, self.has_cls)  # (grid, grid)
        rollout = attention_rollout(w[:, None])[0]  # (L, 1, Hd, N, N) -> (grid, grid)
        true, pred = self.class_names[self.labels[i]], self.class_names[self.predictions[i]]
        who = "the <cls> token" if self.has_cls else "the mean over the tokens"
        head_name = "the mean of the heads" if head == "mean" else f"head {head}"

        self.fig.clear()
        axes = self.fig.subplots(1, 4, width_ratios=[1, 1, 1, 1.15])
        img = _display_image(self.images[i])
        axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[0].set(xticks=[], yticks=[])
        axes[0].set_title(f"#{self.ids[i]}: true {true}\npredicted {pred}", fontsize=10,
                          color="black" if true == pred else "tab:red")
        overlay(axes[1], self.images[i], attention, self.alpha,
                f"layer {layer}, {head_name}")
        overlay(axes[2], self.images[i], rollout, self.alpha, "rollout, all layers")
        im = axes[3].imshow(chosen, cmap="viridis", vmin=0)
        ticks = np.arange(0, len(chosen), max(1, len(chosen) // 6))
        axes[3].set(xlabel="key", ylabel="query", title=f"(N, N) weights, layer {layer}",
                    xticks=ticks, yticks=ticks)
        axes[3].title.set_fontsize(10)
        self.fig.colorbar(im, ax=axes[3], fraction=0.046)
        self.fig.subplots_adjust(left=0.02, right=0.96, top=0.82, bottom=0.12, wspace=0.25)

        r, c = np.unravel_index(attention.argmax(), attention.shape)
        rr, rc = np.unravel_index(rollout.argmax(), rollout.shape)
        lines = [f"image #{self.ids[i]}: true {true}, predicted {pred} "
                 f"({'correct' if true == pred else 'wrong'})",
                 f"layer {layer}, {head_name}: {who} draws most from the patch in row {r + 1}, "
                 f"column {c + 1} (weight {attention.max():.2f}; patches in all "
                 f"{attention.sum():.2f})"]
        if self.has_cls:
            lines.append(f"  and keeps {chosen[0, 0]:.2f} of its attention on itself")
        lines.append(f"rollout over all {len(w)} layers: most from row {rr + 1}, column {rc + 1}")
        return "\n".join(lines)

    def redraw(self, force=False):
        """Redraw for the current controls (skipped when they did not change, unless force)."""
        if self.state() == self.drawn and not force:
            return
        self.text = self.render()
        self.drawn = self.state()
        if self._handles is not None and None not in self._handles:
            self._handles[0].update(self._png_bundle(), raw=True)
            self._handles[1].update({"text/plain": self.text}, raw=True)

    def _on_change(self, change=None):
        self.redraw()

    def png(self):
        """The current figure as PNG bytes."""
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png")
        return buf.getvalue()

    def _png_bundle(self):
        i, layer, head = self.state()
        return {"image/png": base64.b64encode(self.png()).decode("ascii"),
                "text/plain": f"<attention explorer figure: image #{self.ids[i]}, layer {layer}, "
                              f"head {head}>"}

    def display(self):
        """Show the controls, then the figure and the text as outputs that they update.

        The figure and text are plain image/png and text/plain outputs with display ids, so a
        renderer without widgets (GitHub, nbviewer, nbval) still shows those of the starting
        choice, and the controls' text stand-in says what is missing.
        """
        self.redraw(force=True)
        self._handles = show_live(self.controls, STATIC_NOTE, self._png_bundle(), self.text)

    def _ipython_display_(self):
        self.display()
