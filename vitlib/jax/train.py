"""Training the ViT in JAX: `train_step`, `evaluate` and `fit`, short enough for a notebook.

The twin of `vitlib/torch/train.py`, with the same functions, arguments and numbers: AdamW or
plain SGD from optax with linear warmup and a cosine decay, label smoothing, flips and shifts, a
checkpoint after every epoch. What differs is JAX's: the steps are compiled by `nnx.jit` (every
batch has the same shape, so each compiles once), randomness comes from explicit keys reseeded
from (seed, epoch), and mixed precision is a dtype the layers compute in.
"""

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from vitlib import data
from vitlib.history import History
from vitlib.jax.checkpoint import load_checkpoint, save_checkpoint
from vitlib.training import check_fit_args, epoch_line, interrupt_message, nan_error, resumed


def pick_device():
    """JAX's default device (GPU or TPU when present, else the CPU); printed."""
    device = jax.devices()[0]
    print(f"JAX backend: {jax.default_backend()} ({len(jax.devices())} x {device.device_kind})")
    return device


def make_schedule(lr, warmup_steps, total_steps, schedule="cosine"):
    """The learning rate of each step: linear warmup from 0 over `warmup_steps`, then a cosine
    decay to 0 at `total_steps` (or constant). The same numbers as the torch twin's.

    Args:
        lr: peak learning rate.
        warmup_steps: steps of linear warmup.
        total_steps: steps of the whole run.
        schedule: "cosine" or "constant" after the warmup.
    """
    if schedule == "cosine" and warmup_steps >= total_steps:  # all warmup: nothing left to decay
        return optax.linear_schedule(0.0, lr, warmup_steps)
    if schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=lr,
                                                  warmup_steps=warmup_steps,
                                                  decay_steps=total_steps, end_value=0.0)
    if warmup_steps == 0:
        return optax.constant_schedule(lr)
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup_steps),
                                 optax.constant_schedule(lr)], [warmup_steps])


@functools.cache  # the same arguments give the same (stateless) object: jit compiles once
def make_transform(optimizer, lr, warmup_steps, total_steps, schedule, weight_decay):
    """AdamW (decoupled weight decay), or plain SGD as in d2l (weight decay as an L2 term),
    following `make_schedule`."""
    lr = make_schedule(lr, warmup_steps, total_steps, schedule)
    if optimizer == "sgd":
        return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr))
    return optax.adamw(lr, b1=0.9, b2=0.999, weight_decay=weight_decay)


@nnx.jit
def train_step(model, optimizer, x, y, label_smoothing=0.0):
    """One gradient step on a batch; returns the loss (a 0-d array).

    Args:
        model: a vitlib.jax.ViT in training mode.
        optimizer: an nnx.Optimizer over the model's parameters.
        x: images (B, H, W, C). y: labels (B,).
        label_smoothing: share of the target spread evenly over all classes.
    """
    def loss_fn(model):
        logits = model(x).astype(jnp.float32)  # (B, H, W, C) -> (B, num_classes), float32 under amp
        targets = optax.smooth_labels(jax.nn.one_hot(y, logits.shape[-1]), label_smoothing)
        return optax.softmax_cross_entropy(logits, targets).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def eval_step(model, x, y):
    """Summed cross-entropy and number of correct predictions on a batch."""
    logits = model(x).astype(jnp.float32)  # (B, num_classes)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
    return loss, (logits.argmax(axis=-1) == y).sum()


def evaluate(model, images, labels, batch_size=256):
    """Mean cross-entropy and accuracy over every example (the last batch may be smaller; it
    compiles once more). Leaves the model in eval mode.

    Args:
        model: a vitlib.jax.ViT.
        images: uint8 (N, 28, 28); resized to model.cfg.img_size. labels: int (N,).
        batch_size: examples per forward pass.
    """
    model.eval()
    loss_sum, correct = 0.0, 0
    for x, y in data.batches(images, labels, batch_size, shuffle=False,
                             img_size=model.cfg.img_size, layout="NHWC"):
        loss, right = eval_step(model, x, y)
        loss_sum, correct = loss_sum + float(loss), correct + int(right)
    return loss_sum / len(labels), correct / len(labels)


@nnx.jit
def predict_step(model, x):
    """The predicted class of each image of a batch."""
    return model(x).argmax(axis=-1)  # (B, H, W, C) -> (B, num_classes) -> (B,)


def predict(model, images, batch_size=256):
    """The predicted class of every image, as a NumPy array of class ids (N,), e.g. for
    vitlib.plots.confusion_matrix. Leaves the model in eval mode.

    Args:
        model: a vitlib.jax.ViT.
        images: uint8 (N, 28, 28); resized to model.cfg.img_size.
        batch_size: examples per forward pass.
    """
    model.eval()
    predictions = [np.zeros(0, np.int64)]  # no images give no predictions
    no_labels = np.zeros(len(images), np.int64)  # batches() pairs images with labels
    for x, _ in data.batches(images, no_labels, batch_size, shuffle=False,
                             img_size=model.cfg.img_size, layout="NHWC"):
        predictions.append(np.asarray(predict_step(model, x)))  # (B,)
    return np.concatenate(predictions).astype(np.int64)  # (N,)


def set_compute_dtype(model, dtype):
    """Make every Linear and Conv compute in `dtype` (their parameters stay float32); None
    restores the default. LayerNorm and the loss stay in float32: that is mixed precision."""
    for _, module in nnx.iter_graph(model):
        if isinstance(module, (nnx.Linear, nnx.Conv)):
            module.dtype = dtype


def reseed_dropout(model, seed, epoch):
    """Give every dropout layer a fresh key derived from (seed, epoch)."""
    tags = {s.key.tag for _, s in nnx.iter_graph(model) if isinstance(s, nnx.RngStream)}
    nnx.reseed(model, **{tag: jax.random.fold_in(jax.random.key(seed), epoch) for tag in tags})


def fit(model, train, test, *, epochs=3, batch_size=128, lr=1e-3, seed=0, optimizer="adamw",
        weight_decay=0.05, warmup_epochs=0, schedule="cosine", label_smoothing=0.0, flip=False,
        crop=0, amp=False, callback=None, checkpoint=None, resume=None, progress=True):
    """Train `model` on `train`, evaluate on `test` after every epoch; returns a History.

    Training runs on JAX's default device (`pick_device()` shows it). The data order,
    augmentation and dropout of an epoch depend only on (seed, epoch), so on CPU the same call
    gives the same History and weights, and a resumed run ends exactly as an uninterrupted one.
    Ctrl-C stops training and returns the History so far, with interrupted=True.

    Args:
        model: a vitlib.jax.ViT.
        train, test: (uint8 images (N, 28, 28), int labels (N,)) pairs, e.g. from
            vitlib.data.load_fashion_mnist. Images are resized to model.cfg.img_size.
        epochs: passes over the training set (the last incomplete batch is dropped).
        batch_size: examples per step.
        lr: peak learning rate.
        seed: picks the data order, augmentation and dropout.
        optimizer: "adamw" (betas 0.9, 0.999) or "sgd" (plain, as in d2l).
        weight_decay: decoupled for AdamW, an L2 term for SGD.
        warmup_epochs: epochs of linear warmup from 0 (may be fractional).
        schedule: "cosine" decay to 0 after the warmup, or "constant".
        label_smoothing: e.g. 0.1; only the training loss uses it.
        flip, crop: random left-right flips; random shifts of up to `crop` pixels.
        amp: bfloat16 mixed precision on a GPU (ignored on the CPU, with a note).
        callback: called as callback(history) after every epoch, e.g. vitlib.plots.LivePlot().
        checkpoint: a path; model, optimizer and history are saved there after every epoch.
        resume: a checkpoint written by fit(checkpoint=...) to continue from.
        progress: show a progress bar and one line per epoch.
    """
    check_fit_args(train, test, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                   schedule=schedule, warmup_epochs=warmup_epochs, label_smoothing=label_smoothing)
    device = jax.default_backend()
    if amp and device != "gpu":
        print(f"Note: amp=True needs a GPU; training in float32 on {device}.")
        amp = False
    steps = data.num_batches(len(train[0]), batch_size, drop_last=True)
    lr_at = make_schedule(lr, round(warmup_epochs * steps), epochs * steps, schedule)
    tx = make_transform(optimizer, lr, round(warmup_epochs * steps), epochs * steps, schedule,
                        weight_decay)
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    history, start, saved = History(), 0, (None, 0)  # saved: (path, epoch) of the last checkpoint
    if resume is not None:
        history, start = resumed(load_checkpoint(resume, model=model, optimizer=opt), resume)
        saved = (resume, start)
    if progress:
        print(f"Training on {device}: {epochs - start} epoch(s) of {steps} steps of {batch_size}.")
    set_compute_dtype(model, jnp.bfloat16 if amp else None)
    try:
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            model.train()
            reseed_dropout(model, seed, epoch)  # dropout of this epoch
            batches = data.batches(*train, batch_size, seed=seed, epoch=epoch, flip=flip,
                                   crop=crop, img_size=model.cfg.img_size, layout="NHWC",
                                   drop_last=True)
            bar = tqdm(batches, total=steps, desc=f"epoch {epoch + 1}", disable=not progress,
                       leave=False)
            total = 0.0
            # cached_partial walks the (model, optimizer) graph once per epoch instead of at
            # every step: nnx.jit's per-call Python overhead is a few percent of a CPU step.
            step = nnx.cached_partial(train_step, model, opt)
            for i, (x, y) in enumerate(bar):
                loss = float(step(x, y, label_smoothing))
                if not math.isfinite(loss):
                    raise nan_error(loss, epoch, i, float(lr_at(epoch * steps + i)), *saved)
                total += loss
                bar.set_postfix(loss=f"{total / (i + 1):.4f}", refresh=False)
            test_loss, test_acc = evaluate(model, *test, batch_size=batch_size)
            history.append(train_loss=total / steps, test_loss=test_loss, test_acc=test_acc,
                           lr=lr_at(epoch * steps + steps - 1), seconds=time.perf_counter() - t0)
            if checkpoint is not None:
                save_checkpoint(model, checkpoint, optimizer=opt, history=history, epoch=epoch + 1)
                saved = (checkpoint, epoch + 1)
            if progress:
                print(epoch_line(history, epochs))
            if callback is not None:
                callback(history)
    except KeyboardInterrupt:
        history.interrupted = True
        print(interrupt_message(history, *saved))
    finally:
        set_compute_dtype(model, None)
    return history
