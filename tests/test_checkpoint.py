"""Checkpoints in both frameworks: round trips, config mismatches, atomic writes, bad files, and
Ctrl-C during fit followed by a resume that ends exactly like an uninterrupted run.

The runs are tiny (one block, 16x16 images, a hundred synthetic images); every JAX fit uses the
same arguments, so its steps compile once.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx, serialization

import vitlib.jax as vj
import vitlib.torch as vt
from vitlib import ViTConfig, data
from vitlib.checkpoint import Checkpoint
from vitlib.history import History
from twins import CFG, Jax, Torch, synthetic, twins

FIT = dict(epochs=3, batch_size=32, lr=3e-3, warmup_epochs=0.5, progress=False)


TRAIN, TEST = synthetic(96, seed=1), synthetic(40, seed=2)
X = next(data.batches(*TEST, 8, shuffle=False, img_size=CFG.img_size))[0]  # (8, 1, 16, 16)




def same_weights(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def a_history(epochs=2):
    h = History()
    for e in range(epochs):
        h.append(train_loss=1.0 / (e + 1), test_loss=1.5, test_acc=0.5 + e / 10, lr=1e-3,
                 seconds=0.5)
    return h


# ---------------------------------------------------------------- save and load

@twins
@pytest.mark.parametrize("shifted", [False, True], ids=["patches", "shifted patches"])
def test_round_trip_rebuilds_the_model_from_the_file(fw, shifted, tmp_path):
    cfg = ViTConfig.tiny(num_blks=1, pool="mean", num_hiddens=24, num_heads=3,
                         shifted_patches=shifted)
    model, path = fw.model(cfg), tmp_path / f"vit{fw.suffix}"
    fw.lib.save_checkpoint(model, path, history=a_history(), epoch=2)
    ck = fw.lib.load_checkpoint(path)
    assert isinstance(ck, Checkpoint) and ck.config == cfg and ck.model.cfg == cfg
    assert ck.epoch == 2 and ck.history.to_dict() == a_history().to_dict()
    np.testing.assert_array_equal(fw.logits(ck.model, X), fw.logits(model, X))
    assert same_weights(fw.weights(ck.model), fw.weights(model))
    into = fw.model(cfg, seed=5)  # loading into an existing model of the same config
    assert not same_weights(fw.weights(into), fw.weights(model))
    assert fw.lib.load_checkpoint(path, model=into).model is into
    assert same_weights(fw.weights(into), fw.weights(model))
    bare = fw.lib.load_checkpoint(fw.lib.save_checkpoint(model, tmp_path / "bare"))
    assert bare.history is None and bare.epoch is None


@twins
def test_optimizer_state_round_trips(fw, tmp_path):
    model = fw.model()
    opt = fw.optimizer(model)
    # the state after a real step, not the empty initial one
    x, y = next(data.batches(*TRAIN, 8, img_size=CFG.img_size,
                             layout="NCHW" if fw is Torch else "NHWC"))
    if fw is Torch:
        vt.train_step(model, opt, torch.from_numpy(x), torch.from_numpy(y))
        saved = {k: v.clone() for k, v in opt.state_dict()["state"][0].items()}
    else:
        vj.train_step(model, opt, jnp.asarray(x), jnp.asarray(y))
        saved = nnx.to_pure_dict(nnx.state(opt))
    fw.lib.save_checkpoint(model, tmp_path / "ck", optimizer=opt)
    model2 = fw.model(seed=3)
    opt2 = fw.optimizer(model2)
    fw.lib.load_checkpoint(tmp_path / "ck", model=model2, optimizer=opt2)
    if fw is Torch:
        restored = opt2.state_dict()["state"][0]
        assert all(torch.equal(saved[k], restored[k]) for k in saved)
    else:
        restored = nnx.to_pure_dict(nnx.state(opt2))
        assert jax.tree.all(jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), saved,
                                         restored))
        assert int(restored["step"]) == 1


@twins
def test_loading_into_a_different_config_names_the_fields(fw, tmp_path):
    path = fw.lib.save_checkpoint(fw.model(), tmp_path / "ck")
    other = fw.model(ViTConfig.tiny(num_blks=1, num_hiddens=64))
    with pytest.raises(ValueError, match="num_hiddens: 32 vs 64") as err:
        fw.lib.load_checkpoint(path, model=other)
    assert "num_heads" not in str(err.value) and "img_size" not in str(err.value)


@twins
def test_missing_foreign_and_other_framework_files_get_clear_errors(fw, tmp_path):
    with pytest.raises(FileNotFoundError, match="No checkpoint at"):
        fw.lib.load_checkpoint(tmp_path / "nothing.pt")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(ValueError, match="is not a vitlib"):
        fw.lib.load_checkpoint(junk)
    other = Jax if fw is Torch else Torch
    path = other.lib.save_checkpoint(other.model(), tmp_path / "other")
    with pytest.raises(ValueError, match=f"is a vitlib.{other.name} checkpoint"):
        fw.lib.load_checkpoint(path)
    opt_less = fw.lib.save_checkpoint(fw.model(), tmp_path / "plain")
    with pytest.raises(ValueError, match="resume|optimizer"):
        fw.lib.fit(fw.model(), TRAIN, TEST, resume=opt_less, **FIT)


# ---------------------------------------------------------------- atomic writes

def serializer_of(fw):
    return (torch, "save") if fw is Torch else (serialization, "msgpack_serialize")


@twins
@pytest.mark.parametrize("fails", ["serializer", "rename"])
def test_a_failing_write_keeps_the_previous_checkpoint_and_no_temp_file(fw, fails, tmp_path,
                                                                         monkeypatch):
    path = tmp_path / "ck"
    first = fw.model()
    fw.lib.save_checkpoint(first, path, history=a_history(1), epoch=1)
    assert os.listdir(tmp_path) == ["ck"]  # a successful write leaves only the checkpoint
    before = path.read_bytes()

    def boom(*args, **kwargs):
        if fails == "serializer" and fw is Torch:
            args[1].write(b"half a checkpoint")  # torch.save(obj, f): write some bytes first
        raise OSError("disk full")

    monkeypatch.setattr(*(serializer_of(fw) if fails == "serializer" else (os, "replace")), boom)
    with pytest.raises(OSError, match="disk full"):
        fw.lib.save_checkpoint(fw.model(seed=1), path, history=a_history(2), epoch=2)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ck"] and path.read_bytes() == before
    ck = fw.lib.load_checkpoint(path)
    assert ck.epoch == 1 and same_weights(fw.weights(ck.model), fw.weights(first))


# ---------------------------------------------------------------- Ctrl-C and resume

@pytest.fixture(scope="module")
def uninterrupted():
    """{framework name: (History, weights)} of a 3-epoch run without interruption."""
    runs = {}
    for fw in (Torch, Jax):
        model = fw.model()
        runs[fw.name] = fw.lib.fit(model, TRAIN, TEST, **FIT), fw.weights(model)
    return runs


def interrupt_after_epoch(n):
    def callback(history):
        if history.epochs == n:
            raise KeyboardInterrupt
    return callback


@twins
def test_ctrl_c_keeps_the_history_and_the_last_completed_epoch(fw, tmp_path, capsys,
                                                               uninterrupted):
    path = tmp_path / "run"
    hist = fw.lib.fit(fw.model(), TRAIN, TEST, checkpoint=path, callback=interrupt_after_epoch(1),
                      **FIT)
    assert hist.interrupted and hist.epochs == 1
    full = uninterrupted[fw.name][0].results()
    assert {k: v[:1] for k, v in full.items() if k != "interrupted"} == \
        {k: v for k, v in hist.results().items() if k != "interrupted"}
    out = capsys.readouterr().out
    assert "Interrupted" in out and f"resume={str(path)!r}" in out and "after epoch 1" in out
    ck = fw.lib.load_checkpoint(path)
    assert ck.epoch == 1 and ck.history.train_loss == hist.train_loss
    assert os.listdir(tmp_path) == ["run"]


@twins
@pytest.mark.parametrize("where", ["after epoch 1", "during epoch 2"])
def test_resume_ends_exactly_like_an_uninterrupted_run(fw, where, tmp_path, monkeypatch,
                                                       uninterrupted):
    path = tmp_path / "run"
    if where == "after epoch 1":
        first = fw.lib.fit(fw.model(), TRAIN, TEST, checkpoint=path,
                           callback=interrupt_after_epoch(1), **FIT)
    else:
        real_batches = data.batches

        def ctrl_c_in_epoch_2(*args, epoch=0, **kwargs):
            for step, batch in enumerate(real_batches(*args, epoch=epoch, **kwargs)):
                if epoch == 1 and step == 2 and kwargs.get("shuffle", True):
                    raise KeyboardInterrupt
                yield batch

        monkeypatch.setattr(data, "batches", ctrl_c_in_epoch_2)
        first = fw.lib.fit(fw.model(), TRAIN, TEST, checkpoint=path, **FIT)
        monkeypatch.undo()
    assert first.interrupted and first.epochs == 1
    model = fw.model(seed=7)  # a different start: everything must come from the checkpoint
    hist = fw.lib.fit(model, TRAIN, TEST, checkpoint=path, resume=path, **FIT)
    ref_hist, ref_weights = uninterrupted[fw.name]
    assert hist.results() == ref_hist.results() and not hist.interrupted
    assert same_weights(fw.weights(model), ref_weights)
    assert fw.lib.load_checkpoint(path).epoch == 3


@twins
def test_resume_into_a_model_of_another_config_names_the_field(fw, tmp_path):
    path = fw.lib.save_checkpoint(fw.model(), tmp_path / "ck", history=History(), epoch=0)
    with pytest.raises(ValueError, match="pool: 'cls' vs 'mean'"):
        fw.lib.fit(fw.model(ViTConfig.tiny(num_blks=1, pool="mean")), TRAIN, TEST, resume=path,
                   **FIT)
