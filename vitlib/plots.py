"""Plots for both frameworks, from NumPy and plain Python numbers only.

`plot_history` draws the learning curves of a `History`; `LivePlot` is a `fit` callback that
redraws them in one notebook figure after every epoch, instead of stacking a new figure per epoch.
`confusion_matrix` counts which class is taken for which, `class_accuracy_table` prints it per
class, and `plot_confusion` and `plot_misclassified` draw it and the images behind it. The
framework side turns its outputs into NumPy first (`vitlib.torch.predict`, `vitlib.jax.predict`).
"""

import matplotlib.pyplot as plt
import numpy as np
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


def _numpy(x, name):
    """`x` as a NumPy array; lists and tuples are accepted, framework tensors are not."""
    if isinstance(x, (list, tuple)):
        return np.asarray(x)
    if not isinstance(x, np.ndarray):
        raise ValueError(f"Expected {name} as a NumPy array, got {type(x).__module__}."
                         f"{type(x).__name__}. vitlib's plots take NumPy only: convert with "
                         f"x.cpu().numpy() (PyTorch) or np.asarray(x) (JAX).")
    return x


def _class_ids(x, name, num_classes):
    """A 1-D integer array of class ids in [0, num_classes), or a ValueError saying what is wrong."""
    x = _numpy(x, name)
    if x.ndim != 1 or not (np.issubdtype(x.dtype, np.integer) or x.size == 0):
        raise ValueError(f"Expected {name} as a 1-D array of integer class ids, got "
                         f"{x.dtype} with shape {x.shape}. Pass class ids (logits.argmax(-1)), "
                         f"not logits or one-hot rows.")
    if x.size and (x.min() < 0 or x.max() >= num_classes):
        raise ValueError(f"Expected {name} in 0..{num_classes - 1} (num_classes={num_classes}), "
                         f"got values from {x.min()} to {x.max()}. Check num_classes.")
    return x.astype(np.int64)


def confusion_matrix(labels, predictions, num_classes):
    """Count every (true class, predicted class) pair: cm[i, j] images of class i taken for j.

    The diagonal holds the correct predictions, so trace(cm) / cm.sum() is the accuracy, and
    row i sums to the number of images of class i.

    Args:
        labels: the true class of each image, integers (N,).
        predictions: the predicted class of each image, integers (N,).
        num_classes: K, the number of classes; the result is (K, K) int64.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ValueError(f"Expected num_classes as a positive integer, got {num_classes!r}.")
    labels = _class_ids(labels, "labels", num_classes)
    predictions = _class_ids(predictions, "predictions", num_classes)
    if len(labels) != len(predictions):
        raise ValueError(f"Expected one prediction per label, got {len(labels)} labels and "
                         f"{len(predictions)} predictions. Predict on the same images.")
    # Pair (i, j) becomes the single index i * K + j; bincount counts them all at once.
    counts = np.bincount(labels * num_classes + predictions, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes)  # (K, K): rows true, columns predicted


def _check_cm(cm, class_names):
    cm = _numpy(cm, "cm")
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"Expected a square (K, K) confusion matrix, got shape {cm.shape}. "
                         f"Make one with confusion_matrix(labels, predictions, K).")
    if len(class_names) != len(cm):
        raise ValueError(f"Expected {len(cm)} class names for a {cm.shape} confusion matrix, "
                         f"got {len(class_names)}. Pass one name per class, e.g. "
                         f"vitlib.data.FASHION_MNIST_CLASSES.")
    return cm


def class_accuracy_table(cm, class_names):
    """A text table, one row per class: its images, the share classified correctly, and the
    class it is most often taken for.

    Args:
        cm: a (K, K) confusion matrix from `confusion_matrix`.
        class_names: K names, in class-id order.
    """
    cm = _check_cm(cm, class_names)
    width = max(len("class"), *(len(str(c)) for c in class_names))
    head = f"{'class':<{width}} | {'images':>6} | {'accuracy':>8} | most often taken for"
    rows = [head, "-" * len(head)]
    for i, name in enumerate(class_names):
        total = cm[i].sum()
        acc = f"{cm[i, i] / total:.1%}" if total else "-"
        wrong = cm[i].copy()
        wrong[i] = 0  # only the mistakes
        j = int(wrong.argmax())
        confused = f"{class_names[j]} ({wrong[j]})" if wrong[j] else "-"
        rows.append(f"{str(name):<{width}} | {total:>6} | {acc:>8} | {confused}")
    total = cm.sum()
    overall = f"{np.trace(cm) / total:.1%}" if total else "-"
    rows.append(f"{'all':<{width}} | {total:>6} | {overall:>8} |")
    return "\n".join(rows)


def plot_confusion(cm, class_names, ax=None):
    """Draw the confusion matrix: rows are the true classes, columns the predicted ones; the
    colour is the share of the row (so rare and common classes read alike), the number the count.
    Returns the figure.

    Args:
        cm: a (K, K) confusion matrix from `confusion_matrix`.
        class_names: K names, in class-id order.
        ax: a matplotlib axis to draw into; a new figure if None.
    """
    cm = _check_cm(cm, class_names)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 5.6), layout="constrained")
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)  # each row sums to 1
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    K = len(cm)
    for i in range(K):
        for j in range(K):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(K), class_names, rotation=45, ha="right")
    ax.set_yticks(range(K), class_names)
    ax.set(xlabel="predicted class", ylabel="true class", title="Confusion matrix (counts)")
    ax.figure.colorbar(image, ax=ax, label="share of the true class")
    return ax.figure


def plot_misclassified(images, labels, predictions, class_names, n=12, ncols=6):
    """Draw the first `n` images whose prediction is wrong, each titled with the true and the
    predicted class. Returns the figure (with a sentence instead if none is wrong).

    Args:
        images: (N, H, W) grey or (N, H, W, 3) colour images, any numeric dtype.
        labels: the true class of each image, integers (N,).
        predictions: the predicted class of each image, integers (N,).
        class_names: one name per class, in class-id order.
        n: how many misclassified images to show at most.
        ncols: images per row.
    """
    images = _numpy(images, "images")
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(f"Expected images as (N, H, W) grey or (N, H, W, 3) colour, got shape "
                         f"{images.shape}. Drop the channel axis of grey images first "
                         f"(x[:, 0] for NCHW, x[..., 0] for NHWC).")
    labels = _class_ids(labels, "labels", len(class_names))
    predictions = _class_ids(predictions, "predictions", len(class_names))
    if not len(images) == len(labels) == len(predictions):
        raise ValueError(f"Expected one label and one prediction per image, got {len(images)} "
                         f"images, {len(labels)} labels and {len(predictions)} predictions.")
    for name, value in (("n", n), ("ncols", ncols)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"Expected {name} as a positive integer, got {value!r}.")
    wrong = np.flatnonzero(labels != predictions)[:n]
    if len(wrong) == 0:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "No misclassified image.", ha="center", va="center")
        ax.axis("off")
        return fig
    rows = -(-len(wrong) // ncols)
    fig, axes = plt.subplots(rows, ncols, figsize=(1.6 * ncols, 1.95 * rows),
                             layout="constrained", squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(images[i], cmap="gray" if images.ndim == 3 else None)
        ax.set_title(f"true: {class_names[labels[i]]}\npred: {class_names[predictions[i]]}",
                     fontsize=8, color="tab:red")
    return fig
