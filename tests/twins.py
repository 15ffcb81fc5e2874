"""What the training and checkpoint tests share: small labelled images the tests make themselves
(no download), and one adapter per framework so that each test runs the same check on both."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

import vitlib.jax as vj
import vitlib.jax.train as jtrain
import vitlib.torch as vt
import vitlib.torch.train as ttrain
from vitlib import ViTConfig

CFG = ViTConfig.tiny(num_blks=1)  # 16x16 images (resized from 28x28), patch 4, D = 32


def synthetic(n, seed):
    """28x28 uint8 images whose class c is a bright horizontal bar at rows 2c+4..2c+6, on noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 2 * c + 4:2 * c + 7, 4:24] = 255
    return images, labels.astype(np.int64)


class Torch:
    fit, lib, train, name, suffix = staticmethod(vt.fit), vt, ttrain, "torch", ".pt"

    @staticmethod
    def model(cfg=CFG, seed=0):
        torch.manual_seed(seed)
        return vt.ViT(cfg)

    @staticmethod
    def weights(model):
        return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}

    @staticmethod
    def logits(model, x):  # x: float (B, C, H, W) NumPy
        model.eval()
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    @staticmethod
    def optimizer(model):
        return torch.optim.AdamW(model.parameters(), lr=1e-3)


class Jax:
    fit, lib, train, name, suffix = staticmethod(vj.fit), vj, jtrain, "jax", ".msgpack"

    @staticmethod
    def model(cfg=CFG, seed=0):
        return vj.ViT(cfg, rngs=nnx.Rngs(seed))

    @staticmethod
    def weights(model):
        flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
        return {"/".join(map(str, k)): np.asarray(v[...]) for k, v in flat}

    @staticmethod
    def logits(model, x):  # x: float (B, C, H, W) NumPy
        model.eval()
        return np.asarray(forward(model, jnp.asarray(x.transpose(0, 2, 3, 1))))

    @staticmethod
    def optimizer(model):
        return nnx.Optimizer(model, optax.adamw(1e-3), wrt=nnx.Param)


forward = nnx.jit(lambda model, x: model(x))  # compiled: far faster than op-by-op
twins = pytest.mark.parametrize("fw", [Torch, Jax], ids=["torch", "jax"])
