"""The twin training loops: same signature, schedule, label smoothing, determinism, NaN stop,
evaluation of every example, mixed precision, and learning on real Fashion-MNIST.

Each behaviour is checked in both frameworks. The runs are tiny (one block, 16x16 images, a
hundred images), and the JAX runs share one set of fit arguments so each step compiles once.
"""

import dataclasses
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from flax import nnx

import vitlib.jax as vj
import vitlib.jax.train as jtrain
import vitlib.torch as vt
import vitlib.torch.train as ttrain
from vitlib import ViTConfig, data
from vitlib.history import History
from vitlib.recipes import Recipe, choose_recipe, epochs_for_budget
from twins import CFG, Jax, Torch, forward, synthetic, twins

FIT = dict(epochs=2, batch_size=32, lr=3e-3, warmup_epochs=0.5, progress=False)


TRAIN, TEST = synthetic(96, seed=1), synthetic(37, seed=2)  # 37: an odd last test batch


TWINS = {"torch": Torch, "jax": Jax}


def same_weights(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- the same API on both sides

def test_fit_evaluate_schedule_have_the_same_signature_in_both_frameworks():
    for name in ("fit", "evaluate", "make_schedule"):
        assert inspect.signature(getattr(ttrain, name)) == inspect.signature(getattr(jtrain, name))
    for name in ("fit", "train_step", "evaluate", "pick_device", "save_checkpoint",
                 "load_checkpoint"):
        assert callable(getattr(vt, name)) and callable(getattr(vj, name)), name
    assert list(inspect.signature(vt.fit).parameters)[:3] == ["model", "train", "test"]


@twins
def test_pick_device_prints_its_choice(fw, capsys):
    device = fw.train.pick_device()
    out = capsys.readouterr().out
    assert ("cpu" in out.lower() or "cuda" in out or "gpu" in out) and str(device) != ""


# ---------------------------------------------------------------- schedule

@pytest.mark.parametrize("schedule, warmup", [("cosine", 4), ("cosine", 0), ("constant", 4),
                                              ("constant", 0)])
def test_schedule_warms_up_linearly_then_decays_the_same_in_both(schedule, warmup):
    lr, total = 0.5, 20
    t_lr, j_lr = ttrain.make_schedule(lr, warmup, total, schedule), \
        jtrain.make_schedule(lr, warmup, total, schedule)
    t = np.array([t_lr(s) for s in range(total + 1)])
    j = np.array([float(j_lr(s)) for s in range(total + 1)])
    np.testing.assert_allclose(t, j, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(t[:warmup + 1], lr * np.arange(warmup + 1) / max(warmup, 1)
                               if warmup else [lr])
    after = t[warmup:]
    if schedule == "cosine":
        expected = lr * 0.5 * (1 + np.cos(np.pi * np.arange(total - warmup + 1) / (total - warmup)))
        np.testing.assert_allclose(after, expected, atol=1e-12)
        assert after[-1] == pytest.approx(0, abs=1e-12) and np.all(np.diff(after) < 0)
    else:
        assert np.all(after == lr)


def test_schedule_that_is_all_warmup_ramps_up_the_same_in_both():
    # fit(epochs=1, warmup_epochs=1) with the cosine schedule: no step is left for the decay
    t_lr, j_lr = ttrain.make_schedule(0.5, 10, 10, "cosine"), jtrain.make_schedule(0.5, 10, 10)
    t = np.array([t_lr(s) for s in range(11)])
    np.testing.assert_allclose(t, 0.05 * np.arange(11), atol=1e-12)
    np.testing.assert_allclose([float(j_lr(s)) for s in range(11)], t, rtol=1e-6)


# ---------------------------------------------------------------- one step

def smoothed_ce(logits, y, a):
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - logits.max(1, keepdims=True)
    ce = -logp[np.arange(len(y)), y]
    return float(np.mean((1 - a) * ce + a * -logp.mean(1)))


@twins
def test_label_smoothing_gives_the_smoothed_cross_entropy(fw):
    cfg = ViTConfig.tiny(num_blks=1, emb_dropout=0.0, blk_dropout=0.0)
    x, y = next(data.batches(*TRAIN, 16, shuffle=False, img_size=cfg.img_size, layout="NCHW"))
    losses = []
    for a in (0.0, 0.2):
        model = fw.model(cfg)
        expected = smoothed_ce(fw.logits(model, x).astype(np.float64), y, a)
        if fw is Torch:
            opt = ttrain.make_optimizer(model, "adamw", 1e-3, 0.0)
            loss = ttrain.train_step(model, opt, torch.from_numpy(x), torch.from_numpy(y), a)
        else:
            opt = nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)
            loss = jtrain.train_step(model, opt, jnp.asarray(x.transpose(0, 2, 3, 1)),
                                     jnp.asarray(y), a)
        assert float(loss) == pytest.approx(expected, rel=1e-5)
        losses.append(float(loss))
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_torch_amp_step_computes_in_bfloat16_and_keeps_float32_weights():
    # autocast works on CPU too, so the CUDA code path can be exercised here.
    model = Torch.model()
    x, y = next(data.batches(*TRAIN, 16, img_size=CFG.img_size, layout="NCHW"))
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    seen = []
    model.head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    opt = ttrain.make_optimizer(model, "adamw", 1e-3, 0.05)
    loss = ttrain.train_step(model, opt, x, y, amp=True)
    assert seen == [torch.bfloat16] and math.isfinite(loss.item())
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_jax_amp_computes_in_bfloat16_and_keeps_float32_weights():
    model = Jax.model()
    x = jnp.asarray(next(data.batches(*TRAIN, 4, img_size=CFG.img_size, layout="NHWC"))[0])
    jtrain.set_compute_dtype(model, jnp.bfloat16)
    assert forward(model, x).dtype == jnp.bfloat16
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    jtrain.set_compute_dtype(model, None)
    assert forward(model, x).dtype == jnp.float32


@twins
def test_amp_where_it_does_not_pay_is_ignored_with_a_note(fw, capsys, monkeypatch):
    if fw is Torch:  # as on a CPU without native bfloat16 (this machine has it)
        monkeypatch.setattr(ttrain, "amp_supported", lambda device: False)
    elif jax.default_backend() == "gpu":
        pytest.skip("there is a GPU: JAX's amp is not ignored here")
    reference = fw.fit(fw.model(), TRAIN, TEST, **FIT)
    capsys.readouterr()
    hist = fw.fit(fw.model(), TRAIN, TEST, amp=True, **FIT)
    assert "amp=True needs" in capsys.readouterr().out
    assert hist.results() == reference.results()


def test_torch_fit_with_amp_computes_in_bfloat16_where_it_pays(capsys, monkeypatch):
    monkeypatch.setattr(ttrain, "amp_supported", lambda device: True)  # CUDA or a bf16 CPU
    model, seen = Torch.model(), []
    model.head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    hist = vt.fit(model, TRAIN, TEST, amp=True, **FIT)
    assert "needs" not in capsys.readouterr().out
    assert torch.bfloat16 in seen and all(map(math.isfinite, hist.train_loss))
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_amp_supported_on_cuda_and_cpus_with_bfloat16_only():
    assert ttrain.amp_supported("cuda") is True and ttrain.amp_supported("mps") is False
    assert isinstance(ttrain.amp_supported("cpu"), bool)


# ---------------------------------------------------------------- fit

@twins
def test_same_seed_gives_identical_history_and_weights(fw, capsys):
    runs = []
    for seed in (0, 0, 1):
        model = fw.model()
        hist = fw.fit(model, TRAIN, TEST, seed=seed, **{**FIT, "progress": seed == 1})
        runs.append((hist, fw.weights(model)))
    (h1, w1), (h2, w2), (h3, w3) = runs
    assert isinstance(h1, History) and h1.epochs == 2 and not h1.interrupted
    assert h1.results() == h2.results() and same_weights(w1, w2)
    assert h1.results() != h3.results() and not same_weights(w1, w3)  # the seed matters
    out = capsys.readouterr().out
    assert "Training on" in out and "epoch 2/2: train loss" in out  # progress=True prints
    assert str(h1).splitlines()[0].split(" | ")[:4] == ["epoch", "train loss", "test loss",
                                                         "test acc"]


@twins
def test_sgd_is_plain_sgd_with_l2_weight_decay(fw):
    # One step must be w <- w - lr * (grad + wd * w), the update of d2l's torch.optim.SGD.
    cfg, lr, wd = ViTConfig.tiny(num_blks=1, emb_dropout=0.0, blk_dropout=0.0), 0.1, 0.01
    x, y = next(data.batches(*TRAIN, 16, shuffle=False, img_size=cfg.img_size, layout="NCHW"))
    model = fw.model(cfg)
    before = fw.weights(model)
    if fw is Torch:
        F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        grads = {k: p.grad.numpy().copy() for k, p in model.named_parameters()}
        ttrain.train_step(model, ttrain.make_optimizer(model, "sgd", lr, wd), torch.from_numpy(x),
                          torch.from_numpy(y))
    else:
        xj, yj = jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(y)
        loss = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(xj), yj).mean()
        g = nnx.jit(nnx.grad(loss))(model)
        grads = {"/".join(map(str, k)): np.asarray(v[...]) for k, v in nnx.to_flat_state(g)}
        tx = jtrain.make_transform("sgd", lr, 0, 10, "constant", wd)
        jtrain.train_step(model, nnx.Optimizer(model, tx, wrt=nnx.Param), xj, yj)
    after = fw.weights(model)
    assert grads.keys() == before.keys()
    for k in before:
        np.testing.assert_allclose(after[k], before[k] - lr * (grads[k] + wd * before[k]),
                                   rtol=1e-4, atol=1e-7, err_msg=k)
    assert not same_weights(before, after)


def test_torch_adamw_is_fused_on_the_cpu_and_steps_as_the_plain_one():
    cfg = ViTConfig.tiny(num_blks=1, emb_dropout=0.0, blk_dropout=0.0)
    x, y = next(data.batches(*TRAIN, 16, shuffle=False, img_size=cfg.img_size, layout="NCHW"))
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    fused, plain = Torch.model(cfg), Torch.model(cfg)
    plain.load_state_dict(fused.state_dict())
    opt = ttrain.make_optimizer(fused, "adamw", 1e-2, 0.05)
    ref = torch.optim.AdamW(plain.parameters(), lr=1e-2, weight_decay=0.05, fused=False)
    assert opt.param_groups[0]["fused"] is True
    for _ in range(3):
        ttrain.train_step(fused, opt, x, y)
        ttrain.train_step(plain, ref, x, y)
    after, expected = Torch.weights(fused), Torch.weights(plain)
    assert not same_weights(after, Torch.weights(Torch.model(cfg)))
    for k in expected:
        np.testing.assert_allclose(after[k], expected[k], rtol=1e-5, atol=1e-7, err_msg=k)


@twins
def test_fit_with_sgd_keeps_a_constant_rate(fw):
    hist = fw.fit(fw.model(), TRAIN, TEST, **{**FIT, "optimizer": "sgd", "lr": 0.1,
                                              "weight_decay": 0.0, "schedule": "constant"})
    assert hist.lr == [pytest.approx(0.1)] * 2 and all(map(math.isfinite, hist.train_loss))


@twins
def test_nan_loss_stops_at_once_with_a_suggestion(fw, monkeypatch, tmp_path):
    real_batches, served = data.batches, []

    def poisoned(*args, epoch=0, **kwargs):  # epoch 2, step 1 gets a NaN image
        for step, (x, y) in enumerate(real_batches(*args, epoch=epoch, **kwargs)):
            if kwargs.get("shuffle", True):
                served.append((epoch, step))
                if (epoch, step) == (1, 0):
                    x = x.copy()
                    x[0] = np.nan
            yield x, y

    monkeypatch.setattr(data, "batches", poisoned)
    callbacks = []
    with pytest.raises(FloatingPointError) as err:
        fw.fit(fw.model(), TRAIN, TEST, callback=callbacks.append,
               checkpoint=tmp_path / "ck", **FIT)
    msg = str(err.value)
    assert "epoch 2, step 1" in msg and "learning rate" in msg and "warmup" in msg
    assert "amp=False" in msg and "holds the model after epoch 1" in msg
    assert served[-1] == (1, 0) and len(callbacks) == 1  # not one more step, not one more epoch
    assert fw.lib.load_checkpoint(tmp_path / "ck").epoch == 1


@twins
def test_evaluate_counts_every_example(fw):
    model = fw.model()
    loss, acc = fw.lib.evaluate(model, *TEST, batch_size=16)  # 16 + 16 + 5
    x, y = next(data.batches(*TEST, len(TEST[0]), shuffle=False, img_size=CFG.img_size))
    logits = torch.from_numpy(fw.logits(model, x).astype(np.float64))
    assert acc == (logits.argmax(1).numpy() == y).sum() / 37
    assert loss == pytest.approx(F.cross_entropy(logits, torch.from_numpy(y)).item(), rel=1e-5)


@pytest.mark.parametrize("bad, match", [
    (dict(train=TRAIN[0]), "pair"),
    (dict(batch_size=500), "batch_size <= 96"),
    (dict(optimizer="adam"), "optimizer"),
    (dict(schedule="linear"), "schedule"),
    (dict(warmup_epochs=3), "warmup_epochs"),
    (dict(label_smoothing=1.0), "label_smoothing"),
    (dict(epochs=0), "epochs"),
])
@twins
def test_fit_rejects_bad_arguments_with_a_sentence(fw, bad, match):
    kwargs = {**FIT, **bad}
    train = kwargs.pop("train", TRAIN)
    with pytest.raises(ValueError, match=match):
        fw.fit(fw.model(), train, TEST, **kwargs)


@twins
def test_learns_real_fashion_mnist_above_chance(fw):
    train = data.subset(*data.load_fashion_mnist("train"), 2000, seed=0)
    test = data.subset(*data.load_fashion_mnist("test"), 500, seed=0)
    cfg = ViTConfig.tiny(img_size=28, patch_size=7, num_blks=1)
    hist = fw.fit(fw.model(cfg), train, test, epochs=4, batch_size=50, lr=1e-2, warmup_epochs=0.5,
                  progress=False)
    assert hist.test_acc[-1] > 0.35, hist  # chance is 0.1; this run reaches about 0.53


# ---------------------------------------------------------------- recipes

def test_recipes_match_their_descriptions(monkeypatch):
    d2l = Recipe.d2l()
    assert d2l.cfg == ViTConfig.d2l() and (d2l.optimizer, d2l.lr, d2l.epochs, d2l.batch_size) == \
        ("sgd", 0.1, 10, 128) and d2l.schedule == "constant"
    cpu = Recipe.cpu()
    assert cpu.cfg == ViTConfig.fashion_cpu() and cpu.optimizer == "adamw" and cpu.warmup_epochs
    cpu15 = Recipe.cpu15()  # the CPU recipe with shifted patches, mean pooling, no dropout, ...
    assert cpu15.cfg == ViTConfig.fashion_cpu(pool="mean", blk_dropout=0.0, shifted_patches=True,
                                              weight_init="xavier")
    assert cpu15.epochs == 11 and cpu15.lr == cpu.lr == 2e-3
    assert dataclasses.replace(cpu15, name="cpu", cfg=cpu.cfg, epochs=cpu.epochs, lr=cpu.lr) == cpu
    assert "shifted patches 7" in cpu15.describe() and "patch 7" in cpu.describe()
    assert "mean pooling, dropout 0, xavier init;" in cpu15.describe()
    assert "xavier" not in cpu.describe()
    assert Recipe.cpu15(epochs=3).epochs == 3 and Recipe.cpu15(amp=True).amp
    quick = Recipe.quick()
    assert quick.cfg.img_size == 28 and quick.n_train == 2000 and quick.n_test == 1000
    assert set(quick.fit_kwargs()) <= set(inspect.signature(vt.fit).parameters)
    assert "quick" in quick.describe() and "\n" not in quick.describe()
    monkeypatch.setenv("VITLIB_QUICK", "1")
    assert choose_recipe(gpu=True) == quick
    monkeypatch.setenv("VITLIB_QUICK", "0")
    assert choose_recipe(gpu=True) == d2l and choose_recipe(gpu=False) == cpu


def test_epochs_for_budget_fills_the_budget_less_its_margin():
    # 15 minutes, 20 % kept free: 720 s of 36-second epochs is exactly 20 epochs.
    assert epochs_for_budget(900, 36, max_epochs=25) == 20
    assert epochs_for_budget(900, 36, max_epochs=25, margin=0) == 25
    assert epochs_for_budget(900, 25, max_epochs=25) == 25  # 28 fit: capped at the full schedule
    assert epochs_for_budget(900, 80, max_epochs=25) == 9  # a slow moment: 720 / 80 = 9
    assert epochs_for_budget(900, 81, max_epochs=25) == 8  # whole epochs only, rounded down
    assert epochs_for_budget(60, 80, max_epochs=25) == 1  # never fewer than one epoch
    for bad, message in ((dict(budget_s=0, epoch_s=30), "positive budget"),
                         (dict(budget_s=900, epoch_s=-1), "positive budget"),
                         (dict(budget_s=900, epoch_s=30, max_epochs=0), "max_epochs must be"),
                         (dict(budget_s=900, epoch_s=30, max_epochs=2.5), "max_epochs must be"),
                         (dict(budget_s=900, epoch_s=30, margin=1.0), "margin is the share")):
        with pytest.raises(ValueError, match=message):
            epochs_for_budget(**{"max_epochs": 25, **bad})
