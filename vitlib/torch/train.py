"""Training the ViT in PyTorch: `train_step`, `evaluate` and `fit`, short enough for a notebook.

The loop d2l.ai uses for the chapter (minibatch SGD on cross-entropy), with what a real run needs:
AdamW with linear warmup and a cosine decay (the ViT paper's recipe, section 4.1), label
smoothing, flips and shifts, mixed precision on CUDA, a checkpoint after every epoch, and exact
determinism on CPU. The JAX twin, `vitlib/jax/train.py`, has the same functions and arguments.
"""

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vitlib import data
from vitlib.history import History
from vitlib.torch.checkpoint import load_checkpoint, save_checkpoint
from vitlib.training import (check_fit_args, epoch_line, epoch_seed, interrupt_message,
                             nan_error, resumed)


def pick_device():
    """The best device available, CUDA, then Apple's MPS, then the CPU; printed."""
    if torch.cuda.is_available():
        device, name = torch.device("cuda"), torch.cuda.get_device_name()
    elif torch.backends.mps.is_available():
        device, name = torch.device("mps"), "Apple GPU"
    else:
        device, name = torch.device("cpu"), f"{torch.get_num_threads()} threads"
    print(f"PyTorch device: {device} ({name})")
    return device


def make_schedule(lr, warmup_steps, total_steps, schedule="cosine"):
    """The learning rate of each step: linear warmup from 0 over `warmup_steps`, then a cosine
    decay to 0 at `total_steps` (or constant). The same numbers as the optax schedule of the twin.

    Args:
        lr: peak learning rate.
        warmup_steps: steps of linear warmup.
        total_steps: steps of the whole run.
        schedule: "cosine" or "constant" after the warmup.
    """
    def lr_at(step):
        if step < warmup_steps:
            return lr * step / warmup_steps
        if schedule == "constant":
            return lr
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return lr * 0.5 * (1 + math.cos(math.pi * t))
    return lr_at


def amp_supported(device) -> bool:
    """Whether `device` computes in bfloat16 natively: CUDA, or a CPU with bf16 instructions
    (AVX512-BF16, AMX). Only there does `amp=True` take effect."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def make_optimizer(model, optimizer, lr, weight_decay):
    """AdamW (decoupled weight decay), or plain SGD as in d2l (weight decay as an L2 term).

    On CPU and CUDA, AdamW is the fused kernel: one call per step instead of a few small ops
    per parameter tensor (the CPU recipe's optimizer step: about 3.6 -> 1.1 ms)."""
    if optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32
                for p in model.parameters())
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999),
                             weight_decay=weight_decay, fused=fused or None)


def train_step(model, optimizer, x, y, label_smoothing=0.0, amp=False):
    """One gradient step on a batch; returns the loss (a 0-d tensor).

    Args:
        model: a vitlib.torch.ViT in training mode.
        optimizer: a torch optimizer over the model's parameters.
        x: images (B, C, H, W) on the model's device. y: labels (B,).
        label_smoothing: share of the target spread evenly over all classes.
        amp: compute the forward pass in bfloat16 (CUDA, or a CPU with native bfloat16); the
            weights stay float32.
    """
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x)  # (B, C, H, W) -> (B, num_classes)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def evaluate(model, images, labels, batch_size=256):
    """Mean cross-entropy and accuracy over every example (the last batch may be smaller).
    Leaves the model in eval mode.

    Args:
        model: a vitlib.torch.ViT.
        images: uint8 (N, 28, 28); resized to model.cfg.img_size. labels: int (N,).
        batch_size: examples per forward pass.
    """
    model.eval()
    device = next(model.parameters()).device
    loss_sum, correct = 0.0, 0
    for x, y in data.batches(images, labels, batch_size, shuffle=False,
                             img_size=model.cfg.img_size, layout="NCHW"):
        x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        logits = model(x).float()  # (B, num_classes)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
    return loss_sum / len(labels), correct / len(labels)


@torch.no_grad()
def predict(model, images, batch_size=256):
    """The predicted class of every image, as a NumPy array of class ids (N,), e.g. for
    vitlib.plots.confusion_matrix. Leaves the model in eval mode.

    Args:
        model: a vitlib.torch.ViT.
        images: uint8 (N, 28, 28); resized to model.cfg.img_size.
        batch_size: examples per forward pass.
    """
    model.eval()
    device = next(model.parameters()).device
    predictions = [np.zeros(0, np.int64)]  # no images give no predictions
    no_labels = np.zeros(len(images), np.int64)  # batches() pairs images with labels
    for x, _ in data.batches(images, no_labels, batch_size, shuffle=False,
                             img_size=model.cfg.img_size, layout="NCHW"):
        logits = model(torch.from_numpy(x).to(device))  # (B, C, H, W) -> (B, num_classes)
        predictions.append(logits.argmax(dim=1).cpu().numpy())  # (B,)
    return np.concatenate(predictions).astype(np.int64)  # (N,)


def fit(model, train, test, *, epochs=3, batch_size=128, lr=1e-3, seed=0, optimizer="adamw",
        weight_decay=0.05, warmup_epochs=0, schedule="cosine", label_smoothing=0.0, flip=False,
        crop=0, amp=False, callback=None, checkpoint=None, resume=None, progress=True):
    """Train `model` on `train`, evaluate on `test` after every epoch; returns a History.

    Training runs on the device the model is on (`model.to(pick_device())`). The data order,
    augmentation and dropout of an epoch depend only on (seed, epoch), so on CPU the same call
    gives the same History and weights, and a resumed run ends exactly as an uninterrupted one.
    Ctrl-C stops training and returns the History so far, with interrupted=True.

    Args:
        model: a vitlib.torch.ViT.
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
        amp: bfloat16 mixed precision on CUDA, or on a CPU with native bfloat16 (AVX512-BF16 or
            AMX), where it pays for wide models only (bench/amp.py: ViTConfig.d2l() 2.3x faster
            on this project's CPU, the small CPU recipe 0.7x); elsewhere ignored, with a note.
        callback: called as callback(history) after every epoch, e.g. vitlib.plots.LivePlot().
        checkpoint: a path; model, optimizer and history are saved there after every epoch.
        resume: a checkpoint written by fit(checkpoint=...) to continue from.
        progress: show a progress bar and one line per epoch.
    """
    check_fit_args(train, test, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                   schedule=schedule, warmup_epochs=warmup_epochs, label_smoothing=label_smoothing)
    device = next(model.parameters()).device
    if amp and not amp_supported(device):
        print(f"Note: amp=True needs a CUDA GPU or a CPU with native bfloat16; training in "
              f"float32 on {device.type}.")
        amp = False
    steps = data.num_batches(len(train[0]), batch_size, drop_last=True)
    lr_at = make_schedule(lr, round(warmup_epochs * steps), epochs * steps, schedule)
    opt = make_optimizer(model, optimizer, lr, weight_decay)
    history, start, saved = History(), 0, (None, 0)  # saved: (path, epoch) of the last checkpoint
    if resume is not None:
        history, start = resumed(load_checkpoint(resume, model=model, optimizer=opt), resume)
        saved = (resume, start)
    if progress:
        print(f"Training on {device}: {epochs - start} epoch(s) of {steps} steps of {batch_size}.")
    try:
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            model.train()
            torch.manual_seed(epoch_seed(seed, epoch))  # dropout of this epoch
            batches = data.batches(*train, batch_size, seed=seed, epoch=epoch, flip=flip,
                                   crop=crop, img_size=model.cfg.img_size, layout="NCHW",
                                   drop_last=True)
            bar = tqdm(batches, total=steps, desc=f"epoch {epoch + 1}", disable=not progress,
                       leave=False)
            total = 0.0
            for i, (x, y) in enumerate(bar):
                for group in opt.param_groups:
                    group["lr"] = lr_at(epoch * steps + i)
                x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
                loss = train_step(model, opt, x, y, label_smoothing, amp).item()
                if not math.isfinite(loss):
                    raise nan_error(loss, epoch, i, lr_at(epoch * steps + i), *saved)
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
    return history
