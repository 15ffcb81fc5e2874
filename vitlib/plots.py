"""Plots for both frameworks, from NumPy and plain Python numbers only.

`plot_history` draws the learning curves of a `History`; `LivePlot` is a `fit` callback that
redraws them in one notebook figure after every epoch, instead of stacking a new figure per epoch.
"""

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator


def plot_history(history, axes=None):
    """Draw the losses (left) and the test accuracy (right) per epoch; returns the figure.

    Args:
        history: a vitlib.history.History.
        axes: two matplotlib axes to draw into (cleared first); new ones if None.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    loss_ax, acc_ax = axes
    epochs = range(1, history.epochs + 1)
    loss_ax.clear()
    loss_ax.plot(epochs, history.train_loss, "o-", label="train loss")
    loss_ax.plot(epochs, history.test_loss, "s-", label="test loss")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    loss_ax.legend()
    acc_ax.clear()
    acc_ax.plot(epochs, [100 * a for a in history.test_acc], "s-", color="C1")
    acc_ax.set(xlabel="epoch", ylabel="%", title="Test accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
    return loss_ax.figure


class LivePlot:
    """A `fit` callback that redraws one figure of learning curves after every epoch.

    In a notebook the figure is shown once and then updated in place (an IPython display handle);
    elsewhere nothing is shown, and `self.fig` holds the latest drawing (e.g. to savefig).
    """

    def __init__(self):
        self.fig, self.axes, self._handle = None, None, None

    def __call__(self, history):
        if self.fig is None:
            self.fig, self.axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
            plt.close(self.fig)  # only the display handle shows it, not the end of the cell too
        plot_history(history, self.axes)
        if _in_notebook():
            from IPython.display import display
            if self._handle is None:
                self._handle = display(self.fig, display_id=True)
            else:
                self._handle.update(self.fig)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")  # a Jupyter kernel, not a terminal
