"""Checkpoints of a Flax NNX ViT: the parameters and the ViTConfig (as JSON) in one msgpack file.

The twin of `vitlib/torch/checkpoint.py`, with the same functions and arguments. The weights are
`nnx.state(model, nnx.Param)` as a pure dict of arrays, written with flax.serialization's msgpack
(exact bytes, no pickle). The dropout keys are not saved: `fit` derives them from (seed, epoch).
`fit` also stores the optimizer state, the History and the epoch. Writes are atomic.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx, serialization

from vitlib.checkpoint import (FORMATS, Checkpoint, atomic_write, check_format, config_json,
                               history_json, missing, not_a_checkpoint, read_config,
                               read_history)
from vitlib.jax.model import ViT


def _pure(node, *filters):
    return jax.tree.map(jax.device_get, nnx.to_pure_dict(nnx.state(node, *filters)))


def _restore(node, pure, *filters):
    state = nnx.state(node, *filters)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, pure))
    nnx.update(node, state)


def save_checkpoint(model, path, *, optimizer=None, history=None, epoch=None) -> Path:
    """Write the model's weights and config (and, optionally, the training state) to `path`.

    Args:
        model: a vitlib.jax.ViT.
        path: the file to write, e.g. "vit.msgpack"; replaced atomically if it exists.
        optimizer: an nnx.Optimizer whose state to keep, for resuming.
        history: a vitlib.history.History to keep.
        epoch: completed epochs.
    """
    payload = {"format": FORMATS["jax"], "config": config_json(model.cfg),
               "params": _pure(model, nnx.Param)}
    if history is not None:
        payload["history"] = history_json(history)
    if epoch is not None:
        payload["epoch"] = int(epoch)
    if optimizer is not None:
        payload["optimizer"] = _pure(optimizer)
    data = serialization.msgpack_serialize(payload)
    return atomic_write(path, lambda f: f.write(data))


def load_checkpoint(path, *, model=None, optimizer=None) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` or `fit(..., checkpoint=path)`.

    Returns a Checkpoint(model, config, history, epoch); `load_checkpoint(path).model` is the
    model, on JAX's default device.

    Args:
        path: the checkpoint file.
        model: a ViT to load the weights into; its config must equal the saved one. If None, a
            new ViT is built from the saved config.
        optimizer: an nnx.Optimizer over `model` to restore, of the same kind.
    """
    if not Path(path).is_file():
        raise missing(path, "jax")
    try:
        payload = serialization.msgpack_restore(Path(path).read_bytes())
    except Exception as e:  # msgpack raises several unrelated types on foreign bytes
        raise not_a_checkpoint(path, "jax", f"msgpack could not read it: {e}") from e
    check_format(payload, path, "jax")
    config = read_config(payload["config"], path)
    if model is None:
        model = ViT(config, rngs=nnx.Rngs(0))
    else:
        config.require_same(model.cfg, f"Cannot load {path} into this model (checkpoint vs model)")
    _restore(model, payload["params"], nnx.Param)
    if optimizer is not None:
        if "optimizer" not in payload:
            raise ValueError(f"{path} holds no optimizer state. Resume from a checkpoint written "
                             f"by fit(..., checkpoint=path).")
        try:
            _restore(optimizer, payload["optimizer"])
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"The optimizer state in {path} does not fit this optimizer ({e}). "
                             f"Resume with the same optimizer= as the run that wrote it.") from e
    return Checkpoint(model, config, read_history(payload.get("history")), payload.get("epoch"))
