"""The patch-size explorer without a browser: the valid patch sizes, what a slider move changes
(token count, grid, strip), the Train button with a fake train_fn, the coalescing of slider
events, the static outputs a notebook keeps, and the patch order against the real model."""

import asyncio

import numpy as np
import pytest
import torch
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import vitlib.torch as vt
from vitlib import ViTConfig
from vitlib.widgets import (STATIC_NOTE, PatchExplorer, patches_in_order, render, resize_image,
                            sample_images)

rng = np.random.default_rng(0)
IMAGES = {"grey": rng.random((28, 28)).astype(np.float32),
          "rgb": (rng.random((60, 50, 3)) * 255).astype(np.uint8)}


class FakeTrain:
    """A train_fn that records its calls and returns a made-up accuracy."""

    def __init__(self, accuracy=0.8):
        self.calls, self.accuracy = [], accuracy

    def __call__(self, cfg, seconds):
        self.calls.append((cfg, seconds))
        return self.accuracy


def explorer(**kw):
    return PatchExplorer(images=IMAGES, **kw)


def tokens_line(ex):
    return ex.text.splitlines()[0]


def grid_lines(ex):
    return len(ex.view.grid.get_segments())


@pytest.mark.parametrize("img_size, options", [
    (28, [1, 2, 4, 7, 14, 28]),
    (32, [1, 2, 4, 8, 16, 32]),
    (96, [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 96]),
    (224, [1, 2, 4, 7, 8, 14, 16, 28, 32, 56, 112, 224]),
])
def test_patch_size_options_are_the_divisors_of_the_image_size(img_size, options):
    ex = explorer()
    ex.img_size_slider.value = img_size
    assert list(ex.patch_slider.options) == options
    assert ex.patch_slider.value in options
    assert ex.cfg.img_size == img_size and ex.cfg.patch_size == ex.patch_slider.value


def test_image_size_change_keeps_or_moves_the_patch_size():
    ex = explorer(patch_size=7)
    ex.img_size_slider.value = 56  # 7 divides 56: kept
    assert ex.patch_slider.value == 7
    ex.img_size_slider.value = 96  # 7 does not divide 96: the nearest valid size, 8
    assert ex.patch_slider.value == 8
    assert "96x96x1, patches 8x8: 12x12 = 144 patches + 1 <cls> -> N = 145 tokens" in ex.text


def test_patch_size_changes_token_count_grid_and_strip():
    ex = explorer()
    ex.redraw()
    assert tokens_line(ex).endswith("N = 17 tokens")
    assert grid_lines(ex) == 2 * (4 + 1)  # 4x4 patches: 5 vertical + 5 horizontal lines
    before = ex.view.strip.get_array().copy()
    ex.patch_slider.value = 4
    assert tokens_line(ex).endswith("N = 50 tokens")
    assert grid_lines(ex) == 2 * (7 + 1)
    assert ex.view.strip.get_array().shape != before.shape
    assert "P = 4" in ex.view.ax_cost.get_title()
    ex.patch_slider.value = 28
    assert tokens_line(ex).endswith("N = 2 tokens") and grid_lines(ex) == 4


def test_many_patches_show_the_first_and_last_in_the_strip():
    ex = explorer(img_size=96, patch_size=4)  # 576 patches
    ex.redraw()
    labels = [t.get_text() for t in ex.view.strip_labels if t.get_visible()]
    assert labels[:3] == ["0", "1", "2"] and labels[-1] == "576"
    assert ex.view.strip_dots.get_visible()
    assert not any(t.get_visible() for t in ex.view.numbers)  # too many to number on the image


def test_image_choice_sets_the_channels():
    ex = explorer()
    ex.image_dropdown.value = "rgb"
    assert ex.cfg.in_channels == 3 and ex.image().shape == (28, 28, 3)
    assert "28x28x3" in tokens_line(ex)
    assert ex.view.img.get_array().shape == (28, 28, 3)


def test_train_button_calls_train_fn_with_the_current_cfg_and_adds_points():
    train = FakeTrain(0.8)
    ex = explorer(train_fn=train, train_seconds=5)
    ex.image_dropdown.value = "rgb"  # shown in RGB, but training is on grey Fashion-MNIST
    ex.redraw()
    assert ex.status.value == "0 run(s)"
    ex.train_button.click()
    cfg, seconds = train.calls[-1]
    assert (cfg.img_size, cfg.patch_size, cfg.in_channels, seconds) == (28, 7, 1, 5)
    assert cfg.num_hiddens == ViTConfig.fashion_cpu().num_hiddens
    assert ex.runs == [{"img_size": 28, "patch_size": 7, "tokens": 17, "accuracy": 0.8}]
    assert "1 run(s)" in ex.status.value and not ex.train_button.disabled
    train.accuracy = 0.7
    ex.patch_slider.value = 4
    ex.train_button.click()
    assert train.calls[-1][0].patch_size == 4
    xs, ys = ex.view.acc_points.get_data()
    assert list(xs) == [17, 50] and list(ys) == [0.8, 0.7]  # the earlier point stays
    assert "2 run(s)" in ex.status.value and "2 run(s)" in ex.view.ax_acc.get_title()
    assert ex.text.splitlines()[-2:] == ["   28   7    17  0.800", "   28   4    50  0.700"]


def test_a_failing_train_fn_is_reported_and_the_controls_come_back():
    ex = explorer(train_fn=FakeTrain(accuracy=87.5))  # a percentage, not a fraction
    ex.train_button.click()  # the widget's callback dispatcher logs the exception
    assert ex.status.value.startswith("Training failed: ValueError")
    assert "[0, 1]" in ex.status.value
    assert ex.runs == [] and not ex.train_button.disabled and not ex.patch_slider.disabled


def test_no_train_fn_hides_the_button():
    ex = explorer()
    assert ex.train_button.layout.display == "none"
    with pytest.raises(ValueError, match="train_fn"):
        ex.train()


def test_a_burst_of_slider_events_makes_one_redraw_of_the_latest_value():
    ex = explorer()
    ex.redraw()
    drawn = []
    update = ex.view.update
    ex.view.update = lambda cfg, *a, **k: (drawn.append(cfg.patch_size), update(cfg, *a, **k))

    async def burst():  # inside a kernel, widget events arrive on a running event loop
        for p in (14, 4, 2, 1, 4):
            ex.patch_slider.value = p
        assert drawn == []  # nothing drawn yet: one redraw is scheduled
        while ex._pending is not None:
            await asyncio.sleep(0.02)

    asyncio.run(burst())
    assert drawn == [4]  # the stale values 14, 2, 1 were never drawn
    assert tokens_line(ex).endswith("N = 50 tokens")


@pytest.fixture
def shell():
    """An IPython shell, as in a kernel: display() needs one. Removed afterwards unless another
    test had made it."""
    existed = InteractiveShell.initialized()
    yield InteractiveShell.instance()
    if not existed:
        InteractiveShell.clear_instance()


def test_display_shows_static_outputs_that_the_controls_update(shell):
    ex = explorer(train_fn=FakeTrain())
    with capture_output() as shown:
        ex.display()
    controls, figure, numbers = shown.outputs
    # Without a widget frontend (GitHub, nbval) a renderer shows text/plain and image/png.
    assert controls.data["text/plain"] == STATIC_NOTE
    assert controls.data["application/vnd.jupyter.widget-view+json"]["model_id"] == \
        ex.controls.model_id
    assert figure.data["image/png"] and "N = 17" in figure.data["text/plain"]
    assert numbers.data["text/plain"].splitlines()[0].endswith("N = 17 tokens")
    with capture_output() as updated:
        ex.patch_slider.value = 14
    new_figure, new_numbers = updated.outputs  # the same outputs, replaced in place
    assert new_figure.update and new_numbers.update
    assert new_figure.transient["display_id"] == figure.transient["display_id"]
    assert new_figure.data["image/png"] != figure.data["image/png"]
    assert new_numbers.data["text/plain"].splitlines()[0].endswith("N = 5 tokens")


def test_render_draws_the_static_view():
    cfg = ViTConfig.d2l()  # 96x96, patch 16
    fig, text = render(cfg, IMAGES["grey"])  # resized from 28 to 96
    assert text.splitlines()[0].endswith("6x6 = 36 patches + 1 <cls> -> N = 37 tokens")
    assert "whole model 6,457,866" in text
    assert "N = 37 tokens" in fig.axes[3].get_title(loc="left")  # the strip
    assert fig.axes[0].get_images()[0].get_array().shape == (96, 96)
    with pytest.raises(ValueError, match="in_channels"):
        render(cfg, IMAGES["rgb"])


def test_patch_order_is_the_models_token_order():
    # A patch embedding that reads the top-left pixel of every patch: its tokens, in the model's
    # order, must be the top-left pixels of patches_in_order.
    image = rng.random((28, 28)).astype(np.float32)
    emb = vt.PatchEmbedding(28, 7, 1, 1)
    with torch.no_grad():
        emb.conv.weight.zero_()
        emb.conv.weight[0, 0, 0, 0] = 1
        emb.conv.bias.zero_()
        tokens = emb(torch.from_numpy(image)[None, None])[0, :, 0].numpy()  # (N,)
    np.testing.assert_allclose(tokens, patches_in_order(image, 7)[:, 0, 0], rtol=1e-6)


def test_resize_and_samples():
    assert resize_image(IMAGES["rgb"], 32).shape == (32, 32, 3)  # centre-cropped to a square
    assert resize_image(IMAGES["grey"], 96).shape == (96, 96)
    samples = sample_images()  # the Fashion-MNIST test files and matplotlib's photo
    assert len(samples) == 6 and "Photo: Grace Hopper (RGB)" in samples
    assert samples["Fashion-MNIST: Ankle boot (test #0)"].shape == (28, 28)


def test_bad_arguments_get_a_sentence():
    with pytest.raises(ValueError, match="does not divide"):
        explorer(img_size=28, patch_size=5)
    with pytest.raises(ValueError, match="img_size from"):
        explorer(img_size=30)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PatchExplorer(images={"x": np.full((8, 8), 3.0)})
    with pytest.raises(ValueError, match="grey \\(H, W\\) or RGB"):
        PatchExplorer(images={"x": np.zeros((1, 1, 8, 8))})
