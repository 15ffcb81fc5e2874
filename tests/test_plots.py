"""The framework-free result plots: the confusion matrix counted by hand, its table, the figures,
and bad input refused with a sentence. Everything here is NumPy; only the test that a framework
tensor is refused imports torch.
"""

import matplotlib

matplotlib.use("Agg")  # no display in tests

import matplotlib.pyplot as plt
import numpy as np
import pytest

from vitlib.history import History
from vitlib.plots import (LivePlot, class_accuracy_table, confusion_matrix, plot_confusion,
                          plot_history, plot_misclassified)

NAMES = ("cat", "dog", "bird")
# Nine images of three classes; the mistakes are image 1 (cat taken for dog), image 4 (dog taken
# for bird), image 5 (dog taken for cat) and image 8 (bird taken for dog).
LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
PREDICTIONS = np.array([0, 1, 0, 1, 2, 0, 2, 2, 1])
EXPECTED = np.array([[2, 1, 0],   # true cat: 2 right, 1 taken for dog
                     [1, 1, 1],   # true dog: 1 taken for cat, 1 right, 1 taken for bird
                     [0, 1, 2]])  # true bird: 1 taken for dog, 2 right


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_confusion_matrix_counts_a_hand_example():
    cm = confusion_matrix(LABELS, PREDICTIONS, 3)
    assert cm.shape == (3, 3) and np.issubdtype(cm.dtype, np.integer)
    np.testing.assert_array_equal(cm, EXPECTED)
    assert cm.sum() == 9 and np.trace(cm) == 5  # accuracy 5 / 9
    np.testing.assert_array_equal(cm.sum(axis=1), [3, 3, 3])  # images per true class


def test_confusion_matrix_rows_are_true_classes_and_unused_classes_stay_zero():
    cm = confusion_matrix([2, 2], [0, 0], num_classes=4)  # lists are accepted too
    expected = np.zeros((4, 4), np.int64)
    expected[2, 0] = 2
    np.testing.assert_array_equal(cm, expected)
    np.testing.assert_array_equal(confusion_matrix(np.zeros(0, np.int64), np.zeros(0, np.int64), 2),
                                  np.zeros((2, 2)))


def test_confusion_matrix_matches_a_loop_on_random_data():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    loop = np.zeros((10, 10), np.int64)
    for t, p in zip(labels, predictions):
        loop[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 10), loop)


@pytest.mark.parametrize("labels, predictions, num_classes, match", [
    (LABELS, PREDICTIONS[:-1], 3, "one prediction per label"),
    (LABELS, PREDICTIONS + 1, 3, r"predictions in 0\.\.2"),
    (LABELS - 1, PREDICTIONS, 3, r"labels in 0\.\.2"),
    (LABELS, np.eye(9, 3), 3, "1-D array of integer class ids"),  # one-hot rows, not ids
    (LABELS, PREDICTIONS.astype(np.float32), 3, "integer class ids"),  # e.g. raw scores
    (LABELS, PREDICTIONS, 0, "positive integer"),
    (LABELS, PREDICTIONS, 3.0, "positive integer"),
    ("012", PREDICTIONS, 3, "NumPy array"),
])
def test_confusion_matrix_refuses_bad_input(labels, predictions, num_classes, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(labels, predictions, num_classes)


def test_framework_tensors_are_refused_with_the_conversion():
    import torch  # only here: the point is that a framework tensor is refused
    with pytest.raises(ValueError, match=r"NumPy.*x\.cpu\(\)\.numpy\(\)"):
        confusion_matrix(torch.tensor([0, 1]), np.array([0, 1]), 2)


def test_class_accuracy_table_reads_the_matrix():
    table = class_accuracy_table(EXPECTED, NAMES)
    lines = table.splitlines()
    assert lines[0].split("|")[0].strip() == "class" and len(lines) == 2 + 3 + 1
    cat, dog, bird, total = (line.split("|") for line in lines[2:])
    assert [c.strip() for c in cat] == ["cat", "3", "66.7%", "dog (1)"]
    assert [c.strip() for c in bird] == ["bird", "3", "66.7%", "dog (1)"]
    assert dog[2].strip() == "33.3%" and dog[3].strip() in ("cat (1)", "bird (1)")
    assert total[1].strip() == "9" and total[2].strip() == "55.6%"
    perfect = class_accuracy_table(np.diag([4, 0, 2]), NAMES)
    assert "| -" in perfect.splitlines()[3]  # no image of "dog": no accuracy, no confusion


def test_plot_confusion_draws_every_count():
    fig = plot_confusion(EXPECTED, NAMES)
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(str(v) for v in EXPECTED.ravel() if v)  # zeros are left blank
    assert [t.get_text() for t in ax.get_xticklabels()] == list(NAMES)
    shown = ax.images[0].get_array()
    np.testing.assert_allclose(shown.sum(axis=1), 1)  # colour: share of each true class
    fig2, ax2 = plt.subplots()
    assert plot_confusion(EXPECTED, NAMES, ax=ax2) is fig2


@pytest.mark.parametrize("cm, names, match", [
    (np.ones((3, 2), np.int64), NAMES, r"square \(K, K\)"),
    (EXPECTED, NAMES[:2], "Expected 3 class names"),
])
def test_confusion_plots_refuse_a_bad_matrix(cm, names, match):
    with pytest.raises(ValueError, match=match):
        plot_confusion(cm, names)
    with pytest.raises(ValueError, match=match):
        class_accuracy_table(cm, names)


def test_plot_misclassified_shows_the_wrong_ones_with_both_names():
    images = np.arange(9 * 4 * 4, dtype=np.uint8).reshape(9, 4, 4)
    fig = plot_misclassified(images, LABELS, PREDICTIONS, NAMES, n=3, ncols=2)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 3  # the first 3 of the 4 mistakes: images 1, 4, 5
    assert [ax.get_title() for ax in shown] == ["true: cat\npred: dog", "true: dog\npred: bird",
                                                 "true: dog\npred: cat"]
    np.testing.assert_array_equal(shown[1].images[0].get_array(), images[4])
    assert len(fig.axes) == 4  # 2 rows of 2; the spare axis is blank


def test_plot_misclassified_with_no_mistake_says_so():
    fig = plot_misclassified(np.zeros((3, 4, 4)), [0, 1, 2], [0, 1, 2], NAMES)
    assert "No misclassified image" in fig.axes[0].texts[0].get_text()


@pytest.mark.parametrize("images, kwargs, match", [
    (np.zeros((9, 1, 4, 4)), {}, r"\(N, H, W\) grey"),  # an NCHW batch
    (np.zeros((8, 4, 4)), {}, "one label and one prediction per image"),
    (np.zeros((9, 4, 4)), dict(n=0), "n as a positive integer"),
    (np.zeros((9, 4, 4)), dict(ncols=1.5), "ncols as a positive integer"),
])
def test_plot_misclassified_refuses_bad_input(images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_misclassified(images, LABELS, PREDICTIONS, NAMES, **kwargs)


def test_history_plots_still_draw_one_figure():
    history = History()
    history.append(train_loss=1.0, test_loss=0.9, test_acc=0.6, lr=1e-3, seconds=1.0)
    history.append(train_loss=0.7, test_loss=0.8, test_acc=0.7, lr=5e-4, seconds=1.0)
    fig = plot_history(history)
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
    live = LivePlot()
    live(history)
    first = live.fig
    live(history)
    assert live.fig is first  # redrawn in place, not a new figure per epoch
