"""The framework-free half of checkpoints: atomic writes, the file format check, the result.

A checkpoint is one file holding the weights and the `ViTConfig` that built them (as JSON), so
`load_checkpoint(path)` can rebuild the model on its own; `fit` adds the optimizer state, the
`History` and the number of completed epochs, which is all it needs to resume. The framework
halves are `vitlib/torch/checkpoint.py` (torch.save) and `vitlib/jax/checkpoint.py` (Flax msgpack).
"""

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vitlib.config import ViTConfig
from vitlib.history import History

FORMATS = {"torch": "vitlib.torch.checkpoint/1", "jax": "vitlib.jax.checkpoint/1"}


@dataclass(frozen=True)
class Checkpoint:
    """What `load_checkpoint` returns.

    Args:
        model: the model holding the loaded weights (the one passed in, or a new one).
        config: the ViTConfig saved with the weights.
        history: the History saved by `fit`, or None.
        epoch: completed epochs when it was saved, or None.
    """

    model: object
    config: ViTConfig
    history: History | None
    epoch: int | None


def atomic_write(path, write) -> Path:
    """Call `write(f)` on a temporary file next to `path`, then rename it to `path`.

    The rename is atomic, so `path` always holds either the previous checkpoint or the whole new
    one, never half of one, even on Ctrl-C or a full disk; the temporary file is always removed.

    Args:
        path: the file to write.
        write: a function that writes the contents to the binary file object it is given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException:  # also KeyboardInterrupt
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def missing(path, framework) -> FileNotFoundError:
    return FileNotFoundError(f"No checkpoint at {path}. Write one with vitlib.{framework}."
                             f"save_checkpoint(model, path) or fit(..., checkpoint=path).")


def _other(framework):
    return "jax" if framework == "torch" else "torch"


def _wrong_framework(path, framework) -> ValueError:
    other = _other(framework)
    return ValueError(f"{path} is a vitlib.{other} checkpoint, not a vitlib.{framework} one. "
                      f"Load it with vitlib.{other}.load_checkpoint, then port the weights "
                      f"with vitlib.interop.")


def not_a_checkpoint(path, framework, why) -> ValueError:
    """The error for a file the framework's reader could not read: the other framework's
    checkpoint (its format tag is near the start of the file) or something else."""
    with open(path, "rb") as f:
        if FORMATS[_other(framework)].encode() in f.read(4096):
            return _wrong_framework(path, framework)
    return ValueError(f"{path} is not a vitlib {framework} checkpoint ({why}). Load files written "
                      f"by vitlib.{framework}.save_checkpoint or fit(..., checkpoint=path).")


def check_format(payload, path, framework) -> None:
    """Raise a ValueError unless `payload` is a `framework` checkpoint."""
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if fmt == FORMATS[framework]:
        return
    if fmt == FORMATS[_other(framework)]:
        raise _wrong_framework(path, framework)
    raise not_a_checkpoint(path, framework, f"format {fmt!r}, expected {FORMATS[framework]!r}")


def config_json(cfg: ViTConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)


def read_config(text, path) -> ViTConfig:
    try:
        return ViTConfig.from_dict(json.loads(text))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path} holds a config that is not a valid ViTConfig: {e}") from e


def history_json(history) -> str | None:
    return None if history is None else json.dumps(history.to_dict())


def read_history(text) -> History | None:
    return None if text is None else History.from_dict(json.loads(text))
