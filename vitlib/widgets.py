"""The patch-size explorer: sliders that show what the patch size P does to a Vision Transformer.

A ViT reads an image as a sentence of P x P patches (Dosovitskiy et al. 2021, section 3.1):
N = (H/P)^2 patch tokens plus one <cls> token. The explorer shows the image cut into patches,
the token sequence the encoder sees, the parameters, FLOPs and attention memory of the model
(from `vitlib.cost`), FLOPs against P with the quadratic attention term on its own, and, with
the "Train" button, test accuracy against N, so the trade-off is measured, not only stated.

Framework-free: NumPy, matplotlib and ipywidgets. Training is a function the notebook passes
in (`train_fn(cfg, seconds) -> test accuracy`), written with the notebook's own framework.

How it is displayed (see `PatchExplorer.display`): the controls are a widget, while the figure
and the numbers are ordinary image/png and text/plain outputs of the same cell, which the
widget's callbacks replace in place (IPython display ids). In a live JupyterLab the controls
drive them; a static render (GitHub, nbviewer, nbval, a notebook opened without a kernel)
still shows the figure and numbers of the last state, and a sentence instead of the controls.
"""

import asyncio
import base64
import dataclasses
import io
import math

import numpy as np
import PIL.Image
from matplotlib import cbook
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from vitlib import cost
from vitlib.config import ViTConfig

IMG_SIZES = (28, 32, 56, 64, 96, 112, 224)  # 28: Fashion-MNIST as stored; 96: the chapter's
STRIP_SLOTS = 52  # at most this many slots in the token strip: <cls>, patches, "..."
STRIP_TAIL = 4  # when the patches do not fit, the strip shows the first ones, "...", the last 4
MAX_NUMBERED = 64  # patches are numbered on the image when there are at most this many
DEBOUNCE_S = 0.08  # slider events closer together than this make one redraw (see _on_change)
DPI = 72
CLS_COLOR = (0.90, 0.45, 0.10)  # the <cls> slot, its marker and the current choice
GRID_COLOR = (1.0, 0.75, 0.0)
STATIC_NOTE = ("[Patch-size explorer controls: sliders for image size, patch size and image, "
               "and a 'Train at this patch size' button. They need a running Jupyter kernel "
               "(run the notebook in JupyterLab); the figure and numbers below are the last "
               "state they produced.]")


# Images.
def _as_float_image(image, name="image"):
    """(H, W) or (H, W, 3) on [0, 1] as float32; uint8 is scaled by 1/255."""
    a = np.asarray(image)
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise ValueError(f"Expected {name} as a grey (H, W) or RGB (H, W, 3) array, got shape "
                         f"{a.shape}. Drop the batch and channel axes, e.g. x[0, 0] for NCHW.")
    a = a.astype(np.float32) / 255 if a.dtype == np.uint8 else a.astype(np.float32)
    if a.size and (a.min() < -1e-3 or a.max() > 1 + 1e-3):
        raise ValueError(f"Expected {name} with pixels on [0, 1] (or uint8), got values from "
                         f"{a.min():.3g} to {a.max():.3g}. Undo the normalisation first.")
    return np.clip(a, 0, 1)


def resize_image(image, img_size):
    """Resize a grey (H, W) or RGB (H, W, 3) image on [0, 1] to img_size x img_size.

    Uses `vitlib.data.resize`, the bilinear resize the training data goes through, after
    halving big images by 2 x 2 averages first, so a photo shrunk 20-fold does not alias.

    Args:
        image: grey (H, W) or RGB (H, W, 3) array, uint8 or float on [0, 1].
        img_size: side of the square output.
    """
    from vitlib.data import resize  # NumPy only

    x = _as_float_image(image)
    if x.shape[0] != x.shape[1]:  # centre crop to a square: patches are square
        s = min(x.shape[:2])
        top, left = (x.shape[0] - s) // 2, (x.shape[1] - s) // 2
        x = x[top:top + s, left:left + s]
    x = x[..., None] if x.ndim == 2 else x  # (S0, S0, C)
    while x.shape[0] >= 2 * img_size and x.shape[0] % 2 == 0:  # box filter: no aliasing
        s = x.shape[0] // 2
        x = x.reshape(s, 2, s, 2, -1).mean(axis=(1, 3))
    x = resize(x.transpose(2, 0, 1), img_size).transpose(1, 2, 0)  # (C, S0, S0) -> (S, S, C)
    x = np.clip(x, 0, 1)
    return x[..., 0] if x.shape[-1] == 1 else x


def grace_hopper(rgb=True):
    """The photo `grace_hopper.jpg` from matplotlib's sample data, as (600, 512[, 3]) on [0, 1].

    Args:
        rgb: True for RGB (H, W, 3), False for grey (H, W) (luma weights of ITU-R BT.601).
    """
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        x = imread(f, format="jpg").astype(np.float32) / 255  # (H, W, 3)
    return x if rgb else x @ np.float32([0.299, 0.587, 0.114])


def sample_images(root=None):
    """A few Fashion-MNIST test images and the Grace Hopper photo, as {name: image on [0, 1]}.

    Args:
        root: a folder with the Fashion-MNIST files (see vitlib.data.load_fashion_mnist).
    """
    from vitlib.data import FASHION_MNIST_CLASSES, load_fashion_mnist

    x, y = load_fashion_mnist("test", root=root)  # uint8 (10000, 28, 28)
    images = {}
    for c in (9, 0, 1, 8):  # ankle boot, T-shirt/top, trouser, bag
        i = int(np.argmax(y == c))  # the first test image of the class
        images[f"Fashion-MNIST: {FASHION_MNIST_CLASSES[c]} (test #{i})"] = x[i] / np.float32(255)
    images["Photo: Grace Hopper (grey)"] = grace_hopper(rgb=False)
    images["Photo: Grace Hopper (RGB)"] = grace_hopper(rgb=True)
    return images


def patches_in_order(image, patch_size):
    """Cut (S, S[, 3]) into its (S/P)^2 patches, row by row: (n, P, P[, 3]). The order is the
    token order of the models: PatchEmbedding's conv output flattened row-major.

    Args:
        image: square grey or RGB image.
        patch_size: P, divides the side.
    """
    g = image.shape[0] // patch_size  # patches along one side, H / P
    x = image.reshape(g, patch_size, g, patch_size, -1)  # (H/P, P, W/P, P, C)
    x = x.transpose(0, 2, 1, 3, 4).reshape(g * g, patch_size, patch_size, -1)  # (n, P, P, C)
    return x[..., 0] if image.ndim == 2 else x


# Text.
def _si(x, unit):
    """1234567 -> '1.23 M' + unit."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def _bytes(n):
    for scale, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def describe(cfg, runs=(), train_seconds=None):
    """The explorer's numbers for `cfg` as text: tokens, parameters, FLOPs, attention memory,
    and the training runs so far.

    Args:
        cfg: a ViTConfig.
        runs: dicts with img_size, patch_size, tokens, accuracy (as PatchExplorer.runs).
        train_seconds: the training budget of the runs, for the table's title.
    """
    p, f, mem = cost.param_counts(cfg), cost.flops(cfg), cost.attention_memory_bytes(cfg)
    S, P, C, D, g = cfg.img_size, cfg.patch_size, cfg.in_channels, cfg.num_hiddens, cfg.grid_size
    cls = " + 1 <cls>" if cfg.pool == "cls" else ""
    share = lambda k: f"{_si(f[k], 'FLOP'):>12} ({100 * f[k] / f['total']:4.1f}%)"
    lines = [
        f"Image {S}x{S}x{C}, patches {P}x{P}: {g}x{g} = {cfg.num_patches} patches{cls}"
        f" -> N = {cfg.seq_len} tokens",
        f"Model: D = {D}, {cfg.num_blks} blocks, {cfg.num_heads} heads, MLP {cfg.mlp_num_hiddens}",
        f"Parameters: patch embedding {p['patch_embedding']:,} ({P}*{P}*{C}*{D} weights + {D} "
        f"biases), whole model {p['total']:,}",
        f"Forward FLOPs per image: {_si(f['total'], 'FLOP')} (training step: about 3x)",
        f"  attention        {share('attention')}",
        f"    projections    {_si(f['attention_qkv'] + f['attention_out'], 'FLOP'):>12}"
        f"  (grows like N)",
        f"    N^2 part       {_si(f['attention_scores'], 'FLOP'):>12}  (q k^T and weights @ v:"
        f" grows like N^2)",
        f"  MLP              {share('mlp')}",
        f"  patch embedding  {share('patch_embedding')}",
        f"Attention matrix: {cfg.seq_len}x{cfg.seq_len} = {cfg.seq_len**2:,} numbers = "
        f"{_bytes(mem['per_head'])} (float32) per head and layer; x {cfg.num_heads} heads x "
        f"{cfg.num_blks} layers = {_bytes(mem['total'])} per image",
    ]
    if runs:
        budget = f" after {train_seconds:g} s of training" if train_seconds else ""
        lines += ["", f"Training runs: {len(runs)} (test accuracy on Fashion-MNIST{budget})",
                  "  img   P     N  accuracy"]
        lines += [f"  {r['img_size']:3d} {r['patch_size']:3d} {r['tokens']:5d}  "
                  f"{r['accuracy']:.3f}" for r in runs]
    return "\n".join(lines)


# The figure.
def _spread_ticks(values, keep, min_gap=0.11):
    """The values whose labels do not collide on a log axis (at least min_gap decades apart),
    always including `keep`."""
    kept = []
    for v in values:
        if kept and math.log10(v / kept[-1]) < min_gap:
            if v != keep:
                continue
            kept.pop()  # the chosen value wins over its neighbour
        kept.append(v)
    return kept


def _int_labels(ax):
    """Tick labels 1, 2, 5, 10, 20, ... instead of 10^1 on a log x axis."""
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(NullLocator())


class _View:
    """One figure and its artists, updated in place (set_data), never rebuilt: a redraw is
    drawing and PNG-encoding one figure, about 0.1-0.2 s of CPU."""

    def __init__(self):
        self.fig = fig = Figure(figsize=(13, 5.9), dpi=DPI)
        self.canvas = FigureCanvasAgg(fig)  # not pyplot's: no second copy shown by %inline
        gs = fig.add_gridspec(2, 3, height_ratios=[4, 1], width_ratios=[1, 1.25, 1.25],
                              left=0.03, right=0.985, top=0.9, bottom=0.02, wspace=0.28,
                              hspace=0.3)
        # The image with the patch grid and the patch numbers.
        self.ax_img = ax = fig.add_subplot(gs[0, 0])
        ax.set_xticks([]), ax.set_yticks([])
        self.img = ax.imshow(np.zeros((2, 2)), cmap="gray", vmin=0, vmax=1,
                             interpolation="nearest")
        self.grid = ax.add_collection(LineCollection([], colors=[GRID_COLOR], linewidths=1.2))
        self.numbers = [ax.text(0, 0, "", ha="center", va="center", color=GRID_COLOR,
                                fontsize=8, fontweight="bold", visible=False)
                        for _ in range(MAX_NUMBERED)]
        # FLOPs against patch size: the total, the layers that cost the same for every token
        # (their FLOPs grow like N), and attention's token-against-token part (like N^2).
        self.ax_cost = ax = fig.add_subplot(gs[0, 1])
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlabel("patch size P (pixels)")
        ax.set_ylabel("forward FLOPs per image (log scale)")
        ax.grid(True, which="major", alpha=0.3)
        styles = {"total": ("total", "k", "-", 2.5),
                  "per_token": ("per-token layers: qkv, W_o, MLP (grow like N)", "tab:blue",
                                "-", 1.8),
                  "scores": ("attention q k\u1d40 and weights v (grow like N\u00b2)", "tab:red",
                             "--", 2.5)}
        self.cost_lines = {k: ax.plot([], [], color=c, ls=ls, lw=lw, marker=".", label=label)[0]
                           for k, (label, c, ls, lw) in styles.items()}
        self.cost_now = ax.plot([], [], "o", ms=11, mfc="none", mec=CLS_COLOR, mew=2.5,
                                label="your patch size")[0]
        self.cost_vline = ax.axvline(1, color=CLS_COLOR, lw=1, alpha=0.6)
        ax.legend(loc="upper right", fontsize=9)
        # Test accuracy against the number of tokens, one point per training run.
        self.ax_acc = ax = fig.add_subplot(gs[0, 2])
        ax.set_xscale("log")
        _int_labels(ax)
        ax.set_xlabel("tokens N (log scale)")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.grid(True, alpha=0.3)
        self.acc_points = ax.plot([], [], "o", color="tab:purple", ms=8)[0]
        self.acc_last = ax.plot([], [], "o", color=CLS_COLOR, ms=12, mfc="none", mew=2.5)[0]
        self.acc_vline = ax.axvline(1, color=CLS_COLOR, lw=1.2, ls=":")
        self.acc_now = ax.text(1, 0.98, "", color=CLS_COLOR, fontsize=9, ha="left", va="top",
                               transform=ax.get_xaxis_transform())
        self.acc_empty = ax.text(0.5, 0.5, "", ha="center", va="center", transform=ax.transAxes,
                                 fontsize=11, color="0.4")
        self.acc_labels = []
        # The token sequence: <cls>, then the patches in order.
        self.ax_strip = ax = fig.add_subplot(gs[1, :])
        ax.set_axis_off()
        self.strip = ax.imshow(np.ones((2, 2, 3)), interpolation="nearest", aspect="equal")
        self.strip_labels = [ax.text(0, 0, "", ha="center", va="top", fontsize=8, visible=False)
                             for _ in range(STRIP_SLOTS)]
        self.strip_cls = ax.text(0, 0, "cls", ha="center", va="center", fontsize=8,
                                 color="white", fontweight="bold")
        self.strip_dots = ax.text(0, 0, "...", ha="center", va="center", fontsize=11,
                                  fontweight="bold")

    def update(self, cfg, image, runs=(), title=""):
        S, P, g = cfg.img_size, cfg.patch_size, cfg.grid_size
        # Image and grid. Lines on the patch borders; the image spans -0.5 .. S - 0.5.
        self.img.set_data(image)
        self.img.set_extent((-0.5, S - 0.5, S - 0.5, -0.5))
        edges = np.arange(g + 1) * P - 0.5
        self.grid.set_segments([[(e, -0.5), (e, S - 0.5)] for e in edges]
                               + [[(-0.5, e), (S - 0.5, e)] for e in edges])
        self.grid.set_linewidths([1.2 if g <= 32 else 0.5])
        numbered = cfg.num_patches <= MAX_NUMBERED
        size = 12 if g <= 4 else 9 if g <= 6 else 7
        for i, t in enumerate(self.numbers):
            t.set_visible(numbered and i < cfg.num_patches)
            if t.get_visible():
                r, c = divmod(i, g)
                t.set_position((c * P + P / 2 - 0.5, r * P + P / 2 - 0.5))
                t.set_text(str(i + 1))
                t.set_fontsize(size)
        arithmetic = f"{S}\u00d7{S} px, P = {P}: {g}\u00d7{g} = {cfg.num_patches} patches"
        self.ax_img.set_title(f"{title}\n{arithmetic}" if title else arithmetic, fontsize=11)
        self._update_cost(cfg)
        self._update_acc(cfg, runs)
        self._update_strip(cfg, image)

    def _update_cost(self, cfg):
        ps = cost.patch_sizes(cfg.img_size)
        per_p = [cost.flops(dataclasses.replace(cfg, patch_size=p)) for p in ps]
        series = {"total": [f["total"] for f in per_p],
                  "per_token": [f["attention_qkv"] + f["attention_out"] + f["mlp"]
                                for f in per_p],
                  "scores": [f["attention_scores"] for f in per_p]}
        for k, line in self.cost_lines.items():
            line.set_data(ps, series[k])
        now = ps.index(cfg.patch_size)
        self.cost_now.set_data([cfg.patch_size] * 3, [series[k][now] for k in series])
        self.cost_vline.set_xdata([cfg.patch_size] * 2)
        ax = self.ax_cost
        lo = min(min(v) for v in series.values())
        hi = max(max(v) for v in series.values())
        ax.set_xlim(ps[0] / 1.3, ps[-1] * 1.3)
        ax.set_ylim(lo / 3, hi * 50)  # headroom for the legend
        ticks = _spread_ticks(ps, cfg.patch_size)
        ax.set_xticks(ticks, [str(p) for p in ticks], fontsize=9)
        ax.xaxis.set_minor_locator(NullLocator())
        for label in ax.get_xticklabels():
            label.set_fontweight("bold" if label.get_text() == str(cfg.patch_size) else "normal")
        ax.set_title(f"Forward FLOPs vs patch size at {cfg.img_size}\u00d7{cfg.img_size}\n"
                     f"P = {cfg.patch_size}: N = {cfg.seq_len} tokens, "
                     f"{_si(cost.flops(cfg)['total'], 'FLOP')} per image", fontsize=11)

    def _update_acc(self, cfg, runs):
        ax = self.ax_acc
        n = [r["tokens"] for r in runs]
        acc = [r["accuracy"] for r in runs]
        self.acc_points.set_data(n, acc)
        self.acc_last.set_data(n[-1:], acc[-1:])
        self.acc_vline.set_xdata([cfg.seq_len] * 2)
        self.acc_now.set_text(f"now: N = {cfg.seq_len}")
        self.acc_empty.set_text("" if runs else "Press 'Train at this patch size'\n"
                                                 "to add a point here")
        while len(self.acc_labels) < len(runs):
            self.acc_labels.append(ax.annotate("", (1, 0), xytext=(7, -13),
                                               textcoords="offset points", fontsize=8))
        seen = set()  # repeated runs at the same sizes get one label
        for i, t in enumerate(self.acc_labels):
            key = (runs[i]["patch_size"], runs[i]["img_size"]) if i < len(runs) else None
            t.set_visible(key is not None and key not in seen)
            seen.add(key)
            if t.get_visible():
                t.xy = (n[i], acc[i])
                t.set_text(f"P={key[0]}, {key[1]}px")
        xs = n + [cfg.seq_len]
        lo, hi = min(xs) / 2.5, max(xs) * 2.5
        ax.set_xlim(lo, hi)
        right_half = cfg.seq_len > math.sqrt(lo * hi)  # then the label goes left of the line
        self.acc_now.set_position((cfg.seq_len * (0.96 if right_half else 1.04), 0.98))
        self.acc_now.set_horizontalalignment("right" if right_half else "left")
        ax.set_title(f"Test accuracy vs tokens: {len(runs)} run(s)\n"
                     f"(each trained for the same time)", fontsize=11)

    def _update_strip(self, cfg, image):
        P, n = cfg.patch_size, cfg.num_patches
        tiles = patches_in_order(image, P)  # (n, P, P[, 3])
        tiles = np.repeat(tiles[..., None], 3, axis=-1) if tiles.ndim == 3 else tiles
        fits = n <= STRIP_SLOTS - 1
        shown = list(range(n)) if fits else (list(range(STRIP_SLOTS - 2 - STRIP_TAIL))
                                             + [None] + list(range(n - STRIP_TAIL, n)))
        slots = ["cls"] + shown  # None is the "..." slot
        r = max(1, math.ceil(12 / P))  # small patches are enlarged, nearest neighbour
        t = P * r
        gap = max(1, t // 5)
        w = t + gap  # one slot: a tile and a gap, in pixels
        strip = np.ones((t, len(slots) * w, 3), np.float32)  # (t, slots * w, 3), white
        for k, s in enumerate(slots):
            if s == "cls":
                strip[:, :t] = CLS_COLOR
            elif s is not None:
                strip[:, k * w:k * w + t] = tiles[s].repeat(r, 0).repeat(r, 1)
        unit = w / t  # a slot is `unit` wide in data coordinates; a tile is 1 x 1
        self.strip.set_data(strip)
        self.strip.set_extent((0, len(slots) * unit, 0, 1))
        # Short sequences get bigger tiles; long ones use the whole width.
        self.ax_strip.set_xlim(0, (max(len(slots), STRIP_SLOTS // 2) + 1) * 1.2)
        self.ax_strip.set_ylim(-0.5, 1.02)
        centre = lambda k: k * unit + 0.5
        self.strip_cls.set_position((centre(0), 0.5))
        self.strip_cls.set_fontsize(8 if len(slots) <= 40 else 6)
        self.strip_dots.set_visible(not fits)
        for k, label in enumerate(self.strip_labels):
            s = slots[k] if k < len(slots) else False
            label.set_visible(s is not False)
            label.set_position((centre(k), -0.08))
            label.set_text("0" if s == "cls" else f"{n - len(shown) + 1}\nmore" if s is None
                           else str(s + 1) if s is not False else "")
            label.set_fontsize(8 if n < 100 else 6.5)  # three-digit positions are wider
            if s is None:
                self.strip_dots.set_position((centre(k), 0.5))
        self.ax_strip.set_title(
            f"The sequence the encoder reads: N = {cfg.seq_len} tokens = <cls> + {n} patches "
            f"taken row by row (numbers: positions in the sequence)", fontsize=11, loc="left")

    def png(self):
        # Draw once and let Pillow encode with light compression: savefig draws again and
        # compresses harder, which made a redraw three times slower (0.5 s against 0.15 s).
        self.canvas.draw()
        rgb = np.asarray(self.canvas.buffer_rgba())[..., :3]  # (H, W, 4) -> (H, W, 3)
        buf = io.BytesIO()
        PIL.Image.fromarray(rgb).save(buf, format="png", compress_level=1)
        return buf.getvalue()


def render(cfg, image, runs=(), title="", train_seconds=None):
    """The explorer's static view: (matplotlib Figure, text of the numbers).

    Args:
        cfg: a ViTConfig; cfg.in_channels must match the image (1 grey, 3 RGB).
        image: grey (H, W) or RGB (H, W, 3) on [0, 1] (or uint8); resized to cfg.img_size.
        runs: training runs to plot, dicts with img_size, patch_size, tokens, accuracy.
        title: the image's title; by default the patch arithmetic.
        train_seconds: the training budget of the runs, for the text.
    """
    if not isinstance(cfg, ViTConfig):
        raise ValueError(f"Expected a vitlib.ViTConfig, got {type(cfg).__name__}.")
    x = _as_float_image(image)
    channels = 1 if x.ndim == 2 else 3
    if channels != cfg.in_channels:
        raise ValueError(f"The image has {channels} channel(s) but cfg.in_channels = "
                         f"{cfg.in_channels}. Use dataclasses.replace(cfg, in_channels="
                         f"{channels}).")
    if x.shape[:2] != (cfg.img_size, cfg.img_size):
        x = resize_image(x, cfg.img_size)
    view = _View()
    view.update(cfg, x, runs, title)
    return view.fig, describe(cfg, runs, train_seconds)


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# The widget.
class PatchExplorer:
    """Sliders for image size and patch size, an image chooser and a "Train" button, driving
    the figure and numbers of `render`. Show it with `display()`, or as a cell's last value.

    Args:
        images: {name: grey (H, W) or RGB (H, W, 3) image, uint8 or on [0, 1]}; None loads
            a few Fashion-MNIST test images and the Grace Hopper photo (`sample_images`).
        train_fn: `train_fn(cfg, seconds) -> test accuracy on [0, 1]`, training a model of `cfg`
            on Fashion-MNIST (so cfg.in_channels is 1) in about `seconds`; None hides the button.
        base_cfg: the model whose cost is shown; image size, patch size and channels come from
            the controls. Default ViTConfig.fashion_cpu(), the model that trains on a CPU.
        img_size, patch_size: the starting values (the patch size must divide the image size).
        image: the name of the starting image; by default the first one.
        train_seconds: the budget passed to train_fn.
    """

    def __init__(self, images=None, train_fn=None, base_cfg=None, img_size=28, patch_size=7,
                 image=None, train_seconds=30):
        import ipywidgets as w

        self.base_cfg = base_cfg if base_cfg is not None else ViTConfig.fashion_cpu()
        if not isinstance(self.base_cfg, ViTConfig):
            raise ValueError(f"Expected base_cfg as a vitlib.ViTConfig, got "
                             f"{type(self.base_cfg).__name__}.")
        if img_size not in IMG_SIZES:
            raise ValueError(f"Expected img_size from {IMG_SIZES}, got {img_size!r}.")
        if patch_size not in cost.patch_sizes(img_size):
            raise ValueError(f"patch_size={patch_size!r} does not divide img_size={img_size}. "
                             f"Choose from {cost.patch_sizes(img_size)}.")
        images = sample_images() if images is None else images
        if not isinstance(images, dict) or not images:
            raise ValueError("Expected images as a non-empty dict {name: image array}, got "
                             f"{type(images).__name__}.")
        self.images = {str(k): _as_float_image(v, f"images[{k!r}]") for k, v in images.items()}
        if image is not None and image not in self.images:
            raise ValueError(f"Expected image to be one of {list(self.images)}, got {image!r}.")
        if train_fn is not None and not callable(train_fn):
            raise ValueError(f"Expected train_fn as a function train_fn(cfg, seconds) -> "
                             f"accuracy, got {type(train_fn).__name__}.")
        self.train_fn, self.train_seconds = train_fn, train_seconds
        self.runs = []  # one dict per training run: img_size, patch_size, tokens, accuracy
        self.text = ""  # the numbers as last drawn
        self.drawn = None  # (img_size, patch_size, image, number of runs) as last drawn
        self.view = _View()
        self._resized = {}  # (name, img_size) -> image: resizing a photo is the slow part
        self._pending = None  # the scheduled redraw, while one is scheduled
        self._handles = None  # the display handles of the figure and the text outputs
        self._rebuilding = False

        # continuous_update=False: a dragged slider sends one value, when it is released, not
        # one per pixel; each value is then one redraw of ~0.1 s. Values that still arrive in
        # a burst (arrow keys held down, or clicks made while training blocked the kernel) are
        # coalesced in _on_change: one redraw of the latest values, the stale ones dropped.
        style = {"description_width": "90px"}
        layout = w.Layout(width="420px")
        self.img_size_slider = w.SelectionSlider(
            options=list(IMG_SIZES), value=img_size, description="image size",
            continuous_update=False, style=style, layout=layout)
        self.patch_slider = w.SelectionSlider(
            options=cost.patch_sizes(img_size), value=patch_size, description="patch size",
            continuous_update=False, style=style, layout=layout)
        self.image_dropdown = w.Dropdown(options=list(self.images),
                                         value=image or next(iter(self.images)),
                                         description="image", style=style, layout=layout)
        self.train_button = w.Button(description="Train at this patch size", icon="play",
                                     button_style="primary", layout=w.Layout(width="220px"))
        self.status = w.Label(value=self._runs_text())
        self.train_button.on_click(self._on_train_click)
        self.train_button.layout.display = None if train_fn else "none"
        self.status.layout.display = None if train_fn else "none"
        self.img_size_slider.observe(self._on_img_size, names="value")
        self.patch_slider.observe(self._on_change, names="value")
        self.image_dropdown.observe(self._on_change, names="value")
        self.controls = w.VBox([
            w.HBox([self.img_size_slider, self.image_dropdown]),
            w.HBox([self.patch_slider, self.train_button, self.status])])
        self.controls.add_class("vitlib-patch-explorer")

    @property
    def cfg(self):
        """The ViTConfig of the current controls."""
        channels = 1 if self.images[self.image_dropdown.value].ndim == 2 else 3
        return dataclasses.replace(self.base_cfg, img_size=self.img_size_slider.value,
                                   patch_size=self.patch_slider.value, in_channels=channels)

    def image(self):
        """The current image at the current size: (S, S) or (S, S, 3) on [0, 1]."""
        key = (self.image_dropdown.value, self.img_size_slider.value)
        if key not in self._resized:
            self._resized[key] = resize_image(self.images[key[0]], key[1])
        return self._resized[key]

    def _runs_text(self):
        return f"{len(self.runs)} run(s)"

    def _on_img_size(self, change):
        # Only the divisors of the new size are valid patch sizes: rebuild the options, keeping
        # the patch size when it still divides, else the nearest one that does.
        S, old = change["new"], self.patch_slider.value
        options = cost.patch_sizes(S)
        keep = old if old in options else min(options, key=lambda p: (abs(math.log(p / old)), -p))
        self._rebuilding = True  # setting options fires value events: redraw once, below
        try:
            self.patch_slider.options = options
            self.patch_slider.value = keep
        finally:
            self._rebuilding = False
        self._on_change()

    def _on_change(self, change=None):
        if self._rebuilding:
            return
        loop = _running_loop()
        if loop is None:  # no event loop (a script, a test): draw now
            self.redraw()
        elif self._pending is None:
            # In a kernel, wait DEBOUNCE_S before drawing. Events that arrive meanwhile only
            # update the slider values; the one scheduled redraw then draws the latest ones.
            self._pending = loop.call_later(DEBOUNCE_S, self._redraw_pending)

    def _redraw_pending(self):
        self._pending = None
        try:
            self.redraw()
        except Exception as e:  # a callback's exception would only reach the kernel's log
            self.status.value = f"Redraw failed: {e}"
            raise

    def redraw(self, force=False):
        """Redraw the figure and the numbers for the current controls (skipped when nothing
        changed since the last redraw, unless force)."""
        cfg, state = self.cfg, (self.img_size_slider.value, self.patch_slider.value,
                                self.image_dropdown.value, len(self.runs))
        if state == self.drawn and not force:
            return
        name = self.image_dropdown.value  # "Fashion-MNIST: Bag (test #18)" -> "Bag (test #18)"
        self.view.update(cfg, self.image(), self.runs, title=name.split(": ", 1)[-1])
        self.text = describe(cfg, self.runs, self.train_seconds)
        self.drawn = state
        if self._handles is not None:
            fig_handle, text_handle = self._handles
            fig_handle.update(self._png_bundle(), raw=True)
            text_handle.update({"text/plain": self.text}, raw=True)

    def _png_bundle(self):
        cfg = self.cfg
        return {"image/png": base64.b64encode(self.view.png()).decode("ascii"),
                "text/plain": f"<patch explorer figure: {cfg.img_size}x{cfg.img_size}, "
                              f"patch {cfg.patch_size}, N = {cfg.seq_len}>"}

    def train(self):
        """Train at the current sizes with train_fn, add the point, redraw; returns the run."""
        if self.train_fn is None:
            raise ValueError("This explorer has no train_fn. Pass PatchExplorer(train_fn=...), a "
                             "function train_fn(cfg, seconds) -> test accuracy.")
        cfg = dataclasses.replace(self.cfg, in_channels=1)  # it trains on Fashion-MNIST
        return self._add_run(cfg, self.train_fn(cfg, self.train_seconds))

    def add_run(self, cfg, accuracy):
        """Add a training run made outside the widget (a point on the accuracy chart and a row
        of the numbers) and redraw; returns the run.

        Args:
            cfg: the ViTConfig that was trained.
            accuracy: its test accuracy, a number in [0, 1].
        """
        run = self._add_run(cfg, accuracy)
        self.status.value = self._runs_text()
        return run

    def _add_run(self, cfg, accuracy):
        if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float, np.floating)) \
                or not 0 <= accuracy <= 1:
            raise ValueError(f"Expected the test accuracy as a number in [0, 1], got "
                             f"{accuracy!r}. Return e.g. history.test_acc[-1] from train_fn.")
        run = {"img_size": cfg.img_size, "patch_size": cfg.patch_size, "tokens": cfg.seq_len,
               "accuracy": float(accuracy)}
        self.runs.append(run)
        self.redraw()
        return run

    def _on_train_click(self, button):
        # Training blocks the kernel: disable the controls first (their state reaches the
        # browser at once), say what is happening, and always give the controls back.
        cfg = self.cfg
        widgets = (self.train_button, self.img_size_slider, self.patch_slider, self.image_dropdown)
        for wdg in widgets:
            wdg.disabled = True
        self.status.value = (f"Training at {cfg.img_size}x{cfg.img_size}, patch {cfg.patch_size}"
                             f" (N = {cfg.seq_len}) for about {self.train_seconds:g} s...")
        message = ""
        try:
            run = self.train()
            message = f"accuracy {run['accuracy']:.3f} at N = {run['tokens']}; {self._runs_text()}"
        except Exception as e:  # shown in the widget: a callback's traceback is hard to find
            message = f"Training failed: {type(e).__name__}: {e}"
            raise
        finally:
            for wdg in widgets:
                wdg.disabled = False
            self.status.value = message  # last: when it shows the result, the controls are back

    def display(self):
        """Show the controls, then the figure and the numbers as outputs that they update.

        The figure and numbers are plain image/png and text/plain outputs with display ids, so
        a renderer without widgets (GitHub, nbviewer, nbval) still shows them; the controls'
        text stand-in says what is missing. A live frontend replaces the outputs in place.
        """
        self.redraw(force=True)
        self._handles = show_live(self.controls, STATIC_NOTE, self._png_bundle(), self.text)

    def _ipython_display_(self):
        self.display()


def show_live(controls, note, png_bundle, text):
    """Display `controls` (with `note` as their text stand-in), then a figure and a text as
    ordinary outputs with display ids; returns the two display handles the controls update.

    A live frontend shows the controls driving the outputs; a renderer without widgets (GitHub,
    nbviewer, nbval) shows the note, the last figure and the text, never an empty widget.
    """
    from IPython.display import display

    display({"application/vnd.jupyter.widget-view+json": {
                "version_major": 2, "version_minor": 0, "model_id": controls.model_id},
             "text/plain": note}, raw=True)
    return (display(png_bundle, raw=True, display_id=True),
            display({"text/plain": text}, raw=True, display_id=True))
