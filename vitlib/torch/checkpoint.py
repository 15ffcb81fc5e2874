"""Checkpoints of a PyTorch ViT: the state_dict and the ViTConfig (as JSON) in one torch.save file.

Because the config travels with the weights, `load_checkpoint(path).model` rebuilds the model
without knowing how it was built. `fit` also stores the optimizer state, the History and the
epoch, which is what `fit(..., resume=path)` needs. Writes are atomic (see vitlib.checkpoint).
The JAX twin, `vitlib/jax/checkpoint.py`, has the same functions with the same arguments.
"""

from pathlib import Path

import torch

from vitlib.checkpoint import (FORMATS, Checkpoint, atomic_write, check_format, config_json,
                               history_json, missing, not_a_checkpoint, read_config,
                               read_history)
from vitlib.torch.model import ViT


def save_checkpoint(model, path, *, optimizer=None, history=None, epoch=None) -> Path:
    """Write the model's weights and config (and, optionally, the training state) to `path`.

    Args:
        model: a vitlib.torch.ViT.
        path: the file to write, e.g. "vit.pt"; replaced atomically if it exists.
        optimizer: a torch optimizer whose state to keep, for resuming.
        history: a vitlib.history.History to keep.
        epoch: completed epochs.
    """
    payload = {"format": FORMATS["torch"], "config": config_json(model.cfg),
               "state_dict": model.state_dict(), "history": history_json(history), "epoch": epoch}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
        payload["optimizer_name"] = type(optimizer).__name__
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path, *, model=None, optimizer=None) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` or `fit(..., checkpoint=path)`.

    Returns a Checkpoint(model, config, history, epoch); `load_checkpoint(path).model` is the
    model. Tensors are loaded onto the CPU, or onto the device of `model` when given.

    Args:
        path: the checkpoint file.
        model: a ViT to load the weights into; its config must equal the saved one. If None, a
            new ViT is built from the saved config.
        optimizer: an optimizer over `model`'s parameters to restore, of the same kind.
    """
    if not Path(path).is_file():
        raise missing(path, "torch")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many unrelated types on foreign bytes
        raise not_a_checkpoint(path, "torch", f"torch.load failed: {e}") from e
    check_format(payload, path, "torch")
    config = read_config(payload["config"], path)
    if model is None:
        model = ViT(config)
    else:
        config.require_same(model.cfg, f"Cannot load {path} into this model (checkpoint vs model)")
    model.load_state_dict(payload["state_dict"])
    if optimizer is not None:
        saved = payload.get("optimizer_name")
        if saved != type(optimizer).__name__:
            raise ValueError(f"{path} holds {saved or 'no'} optimizer state, but the optimizer "
                             f"is {type(optimizer).__name__}. Resume with the same optimizer= "
                             f"as the run that wrote it.")
        optimizer.load_state_dict(payload["optimizer"])
    return Checkpoint(model, config, read_history(payload["history"]), payload["epoch"])
