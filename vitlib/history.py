"""The record of a training run, one row per epoch, shared by both frameworks.

`vitlib.torch.fit` and `vitlib.jax.fit` return a `History`; it prints as a text table, goes into
every checkpoint (as a plain dict), and `results()` holds everything a run computes (not how long
it took), so two runs can be compared for determinism with `==`.
"""

from dataclasses import dataclass, field, fields

COLUMNS = ("train_loss", "test_loss", "test_acc", "lr", "seconds")  # one list each, per epoch


@dataclass(repr=False)
class History:
    """Per-epoch curves of a run.

    Args:
        train_loss: mean training loss of each epoch (with label smoothing if it was on).
        test_loss: mean cross-entropy on the whole test set after each epoch.
        test_acc: fraction of test images classified correctly after each epoch, in [0, 1].
        lr: learning rate of the last step of each epoch.
        seconds: wall time of each epoch, training and evaluation.
        interrupted: True when fit stopped early on Ctrl-C (KeyboardInterrupt).
    """

    train_loss: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    interrupted: bool = False

    def __post_init__(self):
        lengths = {name: len(getattr(self, name)) for name in COLUMNS}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"History needs one value per epoch in every column, got lengths "
                             f"{lengths}.")

    @property
    def epochs(self) -> int:
        """Completed epochs."""
        return len(self.train_loss)

    def append(self, *, train_loss, test_loss, test_acc, lr, seconds):
        """Add one completed epoch."""
        for name, value in zip(COLUMNS, (train_loss, test_loss, test_acc, lr, seconds)):
            getattr(self, name).append(float(value))

    def results(self) -> dict:
        """Everything except the timings: equal for two runs that computed the same thing."""
        return {k: v for k, v in self.to_dict().items() if k != "seconds"}

    def to_dict(self) -> dict:
        return {**{name: list(getattr(self, name)) for name in COLUMNS},
                "interrupted": self.interrupted}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        expected = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or set(d) != expected:
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"Expected a History dict with keys {sorted(expected)}, got {got}.")
        return cls(**{k: [float(x) for x in d[k]] for k in COLUMNS},
                   interrupted=bool(d["interrupted"]))

    def __str__(self):
        head = f"{'epoch':>5} | {'train loss':>10} | {'test loss':>9} | {'test acc':>8} | " \
               f"{'lr':>8} | {'seconds':>7}"
        rows = [head, "-" * len(head)]
        for i in range(self.epochs):
            rows.append(f"{i + 1:>5} | {self.train_loss[i]:>10.4f} | {self.test_loss[i]:>9.4f} | "
                        f"{self.test_acc[i]:>8.2%} | {self.lr[i]:>8.2e} | {self.seconds[i]:>7.1f}")
        if not self.epochs:
            rows.append("(no completed epoch)")
        if self.interrupted:
            rows.append(f"(interrupted after {self.epochs} completed epoch(s))")
        return "\n".join(rows)

    __repr__ = __str__  # a notebook cell ending in `hist` shows the table

    def _repr_pretty_(self, p, cycle):  # IPython's pretty printer
        p.text(str(self))
