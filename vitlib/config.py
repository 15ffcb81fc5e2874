"""One configuration for the Vision Transformer in both frameworks.

The field names are those of the "Transformers for Vision" chapter of Dive into Deep Learning
(d2l.ai, section 11.8), which follows Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words".
The same frozen `ViTConfig` builds `vitlib.torch.ViT` and `vitlib.jax.ViT`, and is saved inside
every checkpoint, so a model can always be rebuilt from its weights.
"""

import dataclasses
from dataclasses import dataclass

POOLS = ("cls", "mean")
WEIGHT_INITS = ("trunc_normal", "xavier")


@dataclass(frozen=True)
class ViTConfig:
    img_size: int = 28  # side of the square input image, in pixels
    patch_size: int = 7  # side of one square patch; must divide img_size; tokens grow as 1/P^2
    in_channels: int = 1  # 1 for Fashion-MNIST, 3 for RGB photos
    num_hiddens: int = 128  # D, the width of every token; the main cost knob with num_blks
    mlp_num_hiddens: int = 256  # hidden width of each block's GELU MLP (d2l: 4 * D)
    num_heads: int = 4  # Hd, attention heads; must divide num_hiddens (head size Dh = D / Hd)
    num_blks: int = 4  # encoder blocks (depth)
    emb_dropout: float = 0.1  # dropout on patch tokens + position embedding
    blk_dropout: float = 0.1  # dropout on attention weights and in the MLP of every block
    use_bias: bool = False  # bias in the attention projections (d2l: False)
    num_classes: int = 10  # outputs of the classification head
    pool: str = "cls"  # "cls": classify the <cls> token; "mean": average all patch tokens
    shifted_patches: bool = False  # Shifted Patch Tokenization: a token also sees around its patch
    # "trunc_normal": every matrix std 0.02 (BERT, DeiT, timm); "xavier": the official ViT code's
    # scales (xavier-uniform encoder, lecun-normal patches, zero head), larger at small D
    weight_init: str = "trunc_normal"

    def __post_init__(self):
        positive = ("img_size", "patch_size", "in_channels", "num_hiddens", "mlp_num_hiddens",
                    "num_heads", "num_blks", "num_classes")
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ViTConfig.{name} must be a positive integer, got {value!r}. "
                                 f"Pass e.g. {name}={getattr(ViTConfig, name)}.")
        if self.img_size % self.patch_size:
            divisors = [p for p in range(1, self.img_size + 1) if self.img_size % p == 0]
            raise ValueError(f"img_size={self.img_size} is not divisible by patch_size="
                             f"{self.patch_size}: the image must split into whole patches. "
                             f"Choose patch_size from {divisors}.")
        if self.num_hiddens % self.num_heads:
            raise ValueError(f"num_hiddens={self.num_hiddens} is not divisible by num_heads="
                             f"{self.num_heads}: each head gets num_hiddens / num_heads features. "
                             f"Choose num_heads that divides {self.num_hiddens}.")
        for name in ("emb_dropout", "blk_dropout"):
            p = getattr(self, name)
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
                raise ValueError(f"ViTConfig.{name} is a dropout probability and must lie in "
                                 f"[0, 1), got {p!r}. Use 0 to switch dropout off.")
        if self.pool not in POOLS:
            raise ValueError(f"ViTConfig.pool must be one of {POOLS}, got {self.pool!r}. "
                             f"'cls' classifies the <cls> token, 'mean' averages the patch tokens.")
        if self.weight_init not in WEIGHT_INITS:
            raise ValueError(f"ViTConfig.weight_init must be one of {WEIGHT_INITS}, got "
                             f"{self.weight_init!r}. 'trunc_normal' draws every matrix with std "
                             f"0.02, 'xavier' scales each by its shape (the official ViT code).")
        for name in ("use_bias", "shifted_patches"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ViTConfig.{name} must be True or False, got "
                                 f"{getattr(self, name)!r}.")
        if self.shifted_patches and self.patch_size < 2:
            raise ValueError("shifted_patches=True shifts the image by half a patch, which needs "
                             "patch_size >= 2; got patch_size=1. Use a larger patch or "
                             "shifted_patches=False.")

    # Derived sizes.
    @property
    def grid_size(self) -> int:
        """Patches along one side: H / P."""
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patch tokens per image: (H / P) * (W / P)."""
        return self.grid_size**2

    @property
    def seq_len(self) -> int:
        """Tokens the encoder sees, N: the patches plus the <cls> token when pool == "cls"."""
        return self.num_patches + (self.pool == "cls")

    @property
    def head_size(self) -> int:
        """Dh = D / Hd."""
        return self.num_hiddens // self.num_heads

    # Presets.
    @classmethod
    def d2l(cls, **overrides) -> "ViTConfig":
        """The chapter's training configuration: 96x96 Fashion-MNIST, patch 16, 2 blocks of 512."""
        return cls(**{**dict(img_size=96, patch_size=16, in_channels=1, num_hiddens=512,
                             mlp_num_hiddens=2048, num_heads=8, num_blks=2, emb_dropout=0.1,
                             blk_dropout=0.1, use_bias=False, num_classes=10, pool="cls"),
                      **overrides})

    @classmethod
    def fashion_cpu(cls, **overrides) -> "ViTConfig":
        """A Fashion-MNIST model that trains in minutes on a laptop CPU: 28x28, patch 7, 17 tokens."""
        return cls(**{**dict(img_size=28, patch_size=7, in_channels=1, num_hiddens=128,
                             mlp_num_hiddens=256, num_heads=4, num_blks=4, emb_dropout=0.0,
                             blk_dropout=0.1, use_bias=False, num_classes=10, pool="cls"),
                      **overrides})

    @classmethod
    def tiny(cls, **overrides) -> "ViTConfig":
        """A model of a few thousand parameters for tests and quick runs: 16x16, patch 4."""
        return cls(**{**dict(img_size=16, patch_size=4, in_channels=1, num_hiddens=32,
                             mlp_num_hiddens=64, num_heads=2, num_blks=2, emb_dropout=0.1,
                             blk_dropout=0.1, use_bias=False, num_classes=10, pool="cls"),
                      **overrides})

    # Serialisation and comparison, used by checkpoints and weight porting.
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ViTConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Unknown ViTConfig fields {unknown}; known fields are {sorted(names)}.")
        return cls(**d)

    def diff(self, other: "ViTConfig") -> dict:
        """{field: (self's value, other's value)} for every field that differs."""
        return {f.name: (getattr(self, f.name), getattr(other, f.name))
                for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)}

    def require_same(self, other: "ViTConfig", what: str) -> None:
        """Raise a ValueError naming the differing fields unless `other` equals this config."""
        d = self.diff(other)
        if d:
            fields = ", ".join(f"{k}: {a!r} vs {b!r}" for k, a, b in ((k, *v) for k, v in d.items()))
            raise ValueError(f"{what}: the configs differ in {fields}. Build the target from the "
                             f"same ViTConfig as the source (or leave the target out to build one).")
