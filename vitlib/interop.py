"""Weight porting between `vitlib.torch.ViT` and `vitlib.jax.ViT`.

The two models compute the same function, so porting is only a matter of layout:
- a torch Linear stores weight (out, in) and computes x @ W.T; an NNX Linear stores kernel
  (in, out) and computes x @ kernel: transpose.
- a torch Conv2d stores weight (D, C, P, P); an NNX Conv stores kernel (P, P, C, D): permute.
- LayerNorm: torch's weight is NNX's scale.
Everything else (position embedding, <cls> token, biases) has the same shape on both sides.
Transposes and copies are exact, so a torch -> JAX -> torch round trip gives back the same bits.
"""

import numpy as np

from vitlib.config import ViTConfig


def _layers(tm, jm):
    """Yield (name, torch module or parameter, NNX module or variable, kind) for every weight."""
    if tm.cfg.shifted_patches:
        yield "patch_embedding.norm", tm.patch_embedding.norm, jm.patch_embedding.norm, "norm"
        yield "patch_embedding.proj", tm.patch_embedding.proj, jm.patch_embedding.proj, "linear"
    else:
        yield "patch_embedding.conv", tm.patch_embedding.conv, jm.patch_embedding.conv, "conv"
    if tm.cfg.pool == "cls":
        yield "cls_token", tm.cls_token, jm.cls_token, "param"
    yield "pos_embedding", tm.pos_embedding, jm.pos_embedding, "param"
    for i, (tb, jb) in enumerate(zip(tm.blks, jm.blks)):
        yield f"blks.{i}.ln1", tb.ln1, jb.ln1, "norm"
        yield f"blks.{i}.attention.W_qkv", tb.attention.W_qkv, jb.attention.W_qkv, "linear"
        yield f"blks.{i}.attention.W_o", tb.attention.W_o, jb.attention.W_o, "linear"
        yield f"blks.{i}.ln2", tb.ln2, jb.ln2, "norm"
        yield f"blks.{i}.mlp.dense1", tb.mlp.dense1, jb.mlp.dense1, "linear"
        yield f"blks.{i}.mlp.dense2", tb.mlp.dense2, jb.mlp.dense2, "linear"
    yield "norm", tm.norm, jm.norm, "norm"
    yield "head", tm.head, jm.head, "linear"


def _check(src_cfg: ViTConfig, into, what):
    if into is not None:
        src_cfg.require_same(into.cfg, f"Cannot port weights ({what})")


def torch_to_jax(tm, into=None):
    """A Flax NNX ViT carrying the weights of the PyTorch ViT `tm`.

    Args:
        tm: a vitlib.torch.ViT.
        into: an existing vitlib.jax.ViT of the same config to overwrite; a new one if None.
    """
    import jax.numpy as jnp
    from flax import nnx

    import vitlib.jax as vj

    _check(tm.cfg, into, "torch -> JAX")
    jm = into if into is not None else vj.ViT(tm.cfg, rngs=nnx.Rngs(0))
    to_np = lambda t: t.detach().cpu().float().numpy()
    for _, t, j, kind in _layers(tm, jm):
        if kind == "param":
            j[...] = jnp.asarray(to_np(t))
        elif kind == "norm":
            j.scale[...] = jnp.asarray(to_np(t.weight))
            j.bias[...] = jnp.asarray(to_np(t.bias))
        else:
            w = to_np(t.weight)
            # torch (out, in) -> NNX (in, out); torch conv (D, C, P, P) -> NNX (P, P, C, D)
            j.kernel[...] = jnp.asarray(w.T if kind == "linear" else w.transpose(2, 3, 1, 0))
            if t.bias is not None:
                j.bias[...] = jnp.asarray(to_np(t.bias))
    return jm


def jax_to_torch(jm, into=None):
    """A PyTorch ViT carrying the weights of the Flax NNX ViT `jm`.

    Args:
        jm: a vitlib.jax.ViT.
        into: an existing vitlib.torch.ViT of the same config to overwrite; a new one if None.
    """
    import torch

    import vitlib.torch as vt

    _check(jm.cfg, into, "JAX -> torch")
    tm = into if into is not None else vt.ViT(jm.cfg)
    to_t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))
    with torch.no_grad():
        for _, t, j, kind in _layers(tm, jm):
            if kind == "param":
                t.copy_(to_t(j[...]))
            elif kind == "norm":
                t.weight.copy_(to_t(j.scale[...]))
                t.bias.copy_(to_t(j.bias[...]))
            else:
                k = np.asarray(j.kernel[...])
                t.weight.copy_(to_t(k.T if kind == "linear" else k.transpose(3, 2, 0, 1)))
                if t.bias is not None:
                    t.bias.copy_(to_t(j.bias[...]))
    return tm
