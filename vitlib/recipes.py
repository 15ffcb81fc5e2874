"""Named training recipes: a model config and the `fit` arguments that go with it.

`Recipe.d2l()` is the chapter's own run (d2l.ai section 11.8: 96x96 images, SGD at lr 0.1 for
10 epochs); `Recipe.cpu()` trains a smaller ViT on 28x28 images with AdamW, warmup and a cosine
decay, the ViT paper's optimiser (section 4.1), in minutes on a laptop; `Recipe.quick()` finishes
in seconds, for CI. `choose_recipe` picks one the way the notebooks do, and `epochs_for_budget`
how many epochs of a recipe fit in a time budget on the machine at hand.
"""

import dataclasses
import math
import os
from dataclasses import dataclass

from vitlib.config import ViTConfig

FIT_ARGS = ("epochs", "batch_size", "lr", "optimizer", "weight_decay", "warmup_epochs",
            "schedule", "label_smoothing", "flip", "crop", "amp")


@dataclass(frozen=True)
class Recipe:
    """A training run: `model = ViT(r.cfg)`, then `fit(model, train, test, **r.fit_kwargs())`.

    Args:
        name: the preset's name.
        cfg: the model's ViTConfig.
        epochs, batch_size, lr, optimizer, weight_decay, warmup_epochs, schedule,
        label_smoothing, flip, crop, amp: passed to `fit` as they are.
        n_train, n_test: how many examples to use (a fixed random subset); None uses them all.
    """

    name: str
    cfg: ViTConfig
    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "adamw"
    weight_decay: float = 0.05
    warmup_epochs: float = 0
    schedule: str = "cosine"
    label_smoothing: float = 0.0
    flip: bool = False
    crop: int = 0
    amp: bool = False
    n_train: int | None = None
    n_test: int | None = None

    @classmethod
    def d2l(cls, **overrides) -> "Recipe":
        """The chapter's run: ViTConfig.d2l() at 96x96, plain SGD at lr 0.1, 10 epochs of 128."""
        return dataclasses.replace(cls("d2l", ViTConfig.d2l(), epochs=10, batch_size=128, lr=0.1,
                                       optimizer="sgd", weight_decay=0.0, schedule="constant"),
                                   **overrides)

    @classmethod
    def cpu(cls, **overrides) -> "Recipe":
        """ViTConfig.fashion_cpu() at 28x28 (17 tokens), AdamW with 1 epoch of warmup and a
        cosine decay, label smoothing and random flips, 5 epochs: about a minute per epoch on a
        2-core CPU. The shipped checkpoints are this recipe with epochs=12 (README, Results)."""
        return dataclasses.replace(cls("cpu", ViTConfig.fashion_cpu(), epochs=5, batch_size=128,
                                       lr=2e-3, weight_decay=0.05, warmup_epochs=1,
                                       label_smoothing=0.1, flip=True),
                                   **overrides)

    @classmethod
    def cpu15(cls, **overrides) -> "Recipe":
        """Recipe.cpu() tuned for 15 minutes on a 2-core CPU: shifted patches (each token also
        sees the pixels around its patch: about +0.4 points at 16 epochs), the mean of the patch
        tokens instead of a <cls> token (pool="mean"), no dropout (at this budget regularisation
        costs accuracy: random shifts cost a point), the official ViT code's initialisation
        (weight_init="xavier": +0.5 to +0.7 points at 10 epochs over timm's truncated normal),
        lr 2e-3, 11 epochs: what the slowest 2-core CPU we measured (AVX2) fits in 15 minutes in
        JAX, the slower framework there (12 epochs took 15.3 minutes). A faster CPU fits more
        epochs, up to the 25 the schedule was first tuned for: `epochs_for_budget` picks them
        (`bench/recipes.py --budget 15`); README, Results, has what each run reached."""
        return dataclasses.replace(cls.cpu(), **{
            "name": "cpu15", "epochs": 11,
            "cfg": ViTConfig.fashion_cpu(pool="mean", blk_dropout=0.0, shifted_patches=True,
                                         weight_init="xavier"),
            **overrides})

    @classmethod
    def quick(cls, **overrides) -> "Recipe":
        """A tiny ViT on 2000 training and 1000 test images for 2 epochs: seconds, for CI."""
        return dataclasses.replace(cls("quick", ViTConfig.tiny(img_size=28, patch_size=7),
                                       epochs=2, batch_size=64, lr=3e-3, warmup_epochs=0.5,
                                       n_train=2000, n_test=1000),
                                   **overrides)

    def fit_kwargs(self) -> dict:
        """The keyword arguments of vitlib.torch.fit / vitlib.jax.fit this recipe sets."""
        return {name: getattr(self, name) for name in FIT_ARGS}

    def describe(self) -> str:
        """One line: the model and the training run."""
        c = self.cfg
        n = "all" if self.n_train is None else self.n_train
        extras = []
        if self.warmup_epochs:
            extras.append(f"{self.warmup_epochs:g} warmup epoch(s)")
        if self.flip:
            extras.append("flips")
        if self.crop:
            extras.append(f"crop {self.crop}")
        if self.amp:
            extras.append("bf16 amp")
        if self.label_smoothing:
            extras.append(f"label smoothing {self.label_smoothing:g}")
        patches = "shifted patches" if c.shifted_patches else "patch"
        init = ", xavier init" if c.weight_init == "xavier" else ""
        return (f"{self.name}: ViT {c.img_size}x{c.img_size} {patches} {c.patch_size}, "
                f"D={c.num_hiddens}, {c.num_blks} blocks, {c.num_heads} heads, {c.pool} pooling, "
                f"dropout {c.blk_dropout:g}{init}; {self.optimizer} lr {self.lr:g} "
                f"({self.schedule}{', ' + ', '.join(extras) if extras else ''}), weight decay "
                f"{self.weight_decay:g}, {self.epochs} epochs of batch {self.batch_size} on {n} "
                f"training images")


def choose_recipe(gpu: bool) -> Recipe:
    """The notebooks' choice: quick when $VITLIB_QUICK=1 (CI sets it), else the chapter's run on
    a GPU, else the CPU recipe.

    Args:
        gpu: whether a GPU is available (e.g. torch.cuda.is_available()).
    """
    if os.environ.get("VITLIB_QUICK", "0") not in ("", "0"):
        return Recipe.quick()
    return Recipe.d2l() if gpu else Recipe.cpu()


def epochs_for_budget(budget_s: float, epoch_s: float, max_epochs: int, margin: float = 0.2) -> int:
    """How many epochs fit in a time budget: the most whole epochs of `epoch_s` seconds each that
    end within `budget_s` less a safety margin, at least 1 and at most `max_epochs`. The cosine
    schedule is then planned for that many epochs, so a faster machine trains longer instead of
    stopping early. `bench/recipes.py --budget 15` measures `epoch_s` on the machine first.

    Args:
        budget_s: seconds available for training.
        epoch_s: measured seconds per epoch, training and evaluation.
        max_epochs: the most epochs worth training, e.g. a recipe's full schedule.
        margin: share of the budget kept free, because a 2-core machine's speed drifts during a
            run: epochs measured at 32 s took 36-41 s a few minutes later (README, Results).
    """
    if not (budget_s > 0 and epoch_s > 0):
        raise ValueError(f"epochs_for_budget needs a positive budget and epoch time in seconds, got "
                         f"budget_s={budget_s!r} and epoch_s={epoch_s!r}.")
    if not (isinstance(max_epochs, int) and max_epochs >= 1):
        raise ValueError(f"max_epochs must be a whole number of at least 1, got {max_epochs!r}.")
    if not 0 <= margin < 1:
        raise ValueError(f"margin is the share of the budget kept free, in [0, 1), got {margin!r}.")
    return max(1, min(max_epochs, math.floor(budget_s * (1 - margin) / epoch_s)))
