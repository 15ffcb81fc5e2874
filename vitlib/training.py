"""The framework-free parts of the two training loops: argument checks and the sentences fit prints.

`vitlib.torch.fit` and `vitlib.jax.fit` share them so that the same mistake gets the same answer
in both frameworks and the loops themselves stay short.
"""

import numpy as np

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")


def check_fit_args(train, test, *, epochs, batch_size, optimizer, schedule, warmup_epochs,
                   label_smoothing):
    """Raise a ValueError with the fix for any argument `fit` cannot use."""
    for name, pair in (("train", train), ("test", test)):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"Expected {name} as a pair (images, labels), e.g. "
                             f"vitlib.data.load_fashion_mnist({name!r}), got "
                             f"{type(pair).__name__}.")
        if len(pair[0]) != len(pair[1]) or len(pair[0]) == 0:
            raise ValueError(f"Expected {name} images and labels of the same, non-zero length, "
                             f"got {len(pair[0])} images and {len(pair[1])} labels.")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Expected {name} to be a positive integer, got {value!r}.")
    if len(train[0]) < batch_size:
        raise ValueError(f"Got {len(train[0])} training images but batch_size={batch_size}: "
                         f"fit drops the last incomplete batch of each epoch, so no step would "
                         f"run. Use batch_size <= {len(train[0])}.")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Expected optimizer in {OPTIMIZERS}, got {optimizer!r}.")
    if schedule not in SCHEDULES:
        raise ValueError(f"Expected schedule in {SCHEDULES}, got {schedule!r}.")
    if not 0 <= warmup_epochs <= epochs:
        raise ValueError(f"Expected 0 <= warmup_epochs <= epochs={epochs}, got {warmup_epochs}.")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"Expected label_smoothing in [0, 1), got {label_smoothing}. "
                         f"0.1 is usual; 0 switches it off.")


def epoch_seed(seed, epoch) -> int:
    """A seed for the randomness (dropout) of one epoch, a pure function of (seed, epoch): a
    resumed run draws exactly what an uninterrupted one would."""
    return int(np.random.SeedSequence((seed, epoch)).generate_state(1)[0])


def resumed(ckpt, path):
    """(history, completed epochs) of a checkpoint that `fit(..., resume=path)` continues."""
    if ckpt.history is None or ckpt.epoch is None or ckpt.epoch != ckpt.history.epochs:
        raise ValueError(f"{path} holds no training state to resume (History and epoch). "
                         f"Resume from a checkpoint written by fit(..., checkpoint=path).")
    return ckpt.history, ckpt.epoch


def nan_error(loss, epoch, step, lr, saved_path, saved_epoch) -> FloatingPointError:
    kept = (f" {saved_path} holds the model after epoch {saved_epoch}." if saved_path else "")
    return FloatingPointError(
        f"The training loss became {loss} at epoch {epoch + 1}, step {step + 1} (learning rate "
        f"{lr:.3g}); training stopped. Likely causes: the learning rate is too high (try 10x "
        f"lower), no warmup (try warmup_epochs=1), or mixed precision (try amp=False).{kept}")


def interrupt_message(history, saved_path, saved_epoch) -> str:
    msg = f"Interrupted: the History keeps the {history.epochs} completed epoch(s)."
    if saved_path:
        return (msg + f" {saved_path} holds the model and optimizer after epoch {saved_epoch}; "
                f"continue with fit(..., resume={str(saved_path)!r}).")
    return msg + (" The model holds the weights of the moment of the interrupt. Pass "
                  "checkpoint=path to fit to be able to resume.")


def epoch_line(history, epochs) -> str:
    return (f"epoch {history.epochs}/{epochs}: train loss {history.train_loss[-1]:.4f}, "
            f"test loss {history.test_loss[-1]:.4f}, test acc {history.test_acc[-1]:.2%} "
            f"({history.seconds[-1]:.1f} s)")
