"""`predict` in both frameworks: the class of every image, as NumPy, agreeing with the logits and
with `evaluate`, and equal across frameworks for the same weights.

The model is tiny (one block, 16x16 images) and the images synthetic, so this runs in seconds.
"""

import inspect

import numpy as np
import jax
import pytest
import torch
from flax import nnx

import vitlib.jax as vj
import vitlib.jax.train as jtrain
import vitlib.torch as vt
import vitlib.torch.train as ttrain
from vitlib import ViTConfig, data
from vitlib.interop import torch_to_jax
from vitlib.plots import confusion_matrix
from twins import synthetic

# 16x16 images (resized from 28x28), patch 4, D = 32. Mean pooling: at initialisation the <cls>
# token barely depends on the image, and every image would get the same class.
CFG = ViTConfig.tiny(num_blks=1, pool="mean")


IMAGES, LABELS = synthetic(37, seed=2)  # 37 = 16 + 16 + 5: an odd last batch


def torch_model():
    torch.manual_seed(0)
    model = vt.ViT(CFG)
    with torch.no_grad():  # a head with a spread of outputs, so the argmax is not one class
        model.head.weight.normal_(0, 1.0)
    return model


def torch_logits(model):
    x, _ = next(data.batches(IMAGES, LABELS, len(IMAGES), shuffle=False, img_size=CFG.img_size,
                             layout="NCHW"))
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()  # (N, num_classes)


def jax_model():
    model = vj.ViT(CFG, rngs=nnx.Rngs(0))
    model.head.kernel[...] = jax.random.normal(jax.random.key(1), model.head.kernel.shape)
    return model


def jax_logits(model):
    x, _ = next(data.batches(IMAGES, LABELS, len(IMAGES), shuffle=False, img_size=CFG.img_size,
                             layout="NHWC"))
    model.eval()
    return np.asarray(model(x))  # (N, num_classes)


TWINS = {"torch": (vt, torch_model, torch_logits), "jax": (vj, jax_model, jax_logits)}
twins = pytest.mark.parametrize("fw", list(TWINS))


def test_predict_has_the_same_signature_in_both_frameworks():
    assert inspect.signature(ttrain.predict) == inspect.signature(jtrain.predict)
    assert list(inspect.signature(vt.predict).parameters) == ["model", "images", "batch_size"]
    assert "predict" in vt.__all__ and "predict" in vj.__all__


@twins
def test_predict_is_the_argmax_of_the_logits_for_every_image(fw):
    lib, make, logits = TWINS[fw]
    model = make()
    model.train()
    got = lib.predict(model, IMAGES, batch_size=16)  # three batches, the last of 5
    assert isinstance(got, np.ndarray) and got.dtype == np.int64 and got.shape == (37,)
    np.testing.assert_array_equal(got, logits(model).argmax(axis=1))
    assert len(set(got.tolist())) > 1  # a constant answer would pass too easily
    assert not model.training if fw == "torch" else model.blks[0].mlp.dropout.deterministic


@twins
def test_predict_agrees_with_evaluate_through_the_confusion_matrix(fw):
    lib, make, _ = TWINS[fw]
    model = make()
    cm = confusion_matrix(LABELS, lib.predict(model, IMAGES, batch_size=8), 10)
    _, acc = lib.evaluate(model, IMAGES, LABELS, batch_size=8)
    assert cm.sum() == 37 and np.trace(cm) / cm.sum() == pytest.approx(acc)


def test_the_same_weights_predict_the_same_classes_in_both_frameworks():
    model = torch_model()
    twin = torch_to_jax(model)
    np.testing.assert_array_equal(vt.predict(model, IMAGES), vj.predict(twin, IMAGES))


@twins
def test_predict_on_no_image_gives_no_prediction(fw):
    lib, make, _ = TWINS[fw]
    got = lib.predict(make(), np.zeros((0, 28, 28), np.uint8))
    assert got.shape == (0,) and got.dtype == np.int64


@twins
def test_predict_refuses_images_that_are_not_uint8(fw):
    lib, make, _ = TWINS[fw]
    with pytest.raises(ValueError, match="uint8 array"):
        lib.predict(make(), IMAGES.astype(np.float32) / 255)
