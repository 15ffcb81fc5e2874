"""ViTConfig: presets, derived sizes, and the errors bad values get."""

import dataclasses

import pytest

from vitlib import ViTConfig


def test_public_constructor_matches_the_issue():
    cfg = ViTConfig(img_size=28, patch_size=4, in_channels=1, num_hiddens=128,
                    mlp_num_hiddens=256, num_heads=4, num_blks=4, emb_dropout=0.1,
                    blk_dropout=0.1, use_bias=False, num_classes=10, pool="cls")
    assert (cfg.grid_size, cfg.num_patches, cfg.seq_len, cfg.head_size) == (7, 49, 50, 32)
    assert dataclasses.replace(cfg, pool="mean").seq_len == 49
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.patch_size = 7


def test_d2l_preset_is_the_chapters_config():
    cfg = ViTConfig.d2l()
    assert (cfg.img_size, cfg.patch_size, cfg.num_hiddens, cfg.mlp_num_hiddens) == (96, 16, 512, 2048)
    assert (cfg.num_heads, cfg.num_blks, cfg.emb_dropout, cfg.blk_dropout) == (8, 2, 0.1, 0.1)
    assert (cfg.use_bias, cfg.in_channels, cfg.num_classes, cfg.pool) == (False, 1, 10, "cls")
    assert cfg.num_patches == 36 and cfg.seq_len == 37


def test_presets_are_valid_and_overridable():
    for preset in (ViTConfig.d2l, ViTConfig.fashion_cpu, ViTConfig.tiny):
        cfg = preset()
        assert cfg.img_size % cfg.patch_size == 0
        assert preset(pool="mean").pool == "mean"
    assert ViTConfig.tiny().num_hiddens < ViTConfig.fashion_cpu().num_hiddens < ViTConfig.d2l().num_hiddens


def test_dict_round_trip_and_diff():
    cfg = ViTConfig.fashion_cpu()
    assert ViTConfig.from_dict(cfg.to_dict()) == cfg
    other = dataclasses.replace(cfg, patch_size=4, pool="mean")
    assert set(cfg.diff(other)) == {"patch_size", "pool"}
    with pytest.raises(ValueError, match="patch_size: 7 vs 4"):
        cfg.require_same(other, "porting")
    with pytest.raises(ValueError, match="Unknown ViTConfig fields"):
        ViTConfig.from_dict({**cfg.to_dict(), "depth": 3})


@pytest.mark.parametrize("overrides, message", [
    (dict(img_size=28, patch_size=5), r"img_size=28 is not divisible by patch_size=5.*\[1, 2, 4, 7, 14, 28\]"),
    (dict(num_hiddens=100, num_heads=8), "num_hiddens=100 is not divisible by num_heads=8"),
    (dict(emb_dropout=1.0), r"emb_dropout is a dropout probability and must lie in \[0, 1\)"),
    (dict(blk_dropout=-0.1), r"blk_dropout .* must lie in \[0, 1\)"),
    (dict(num_blks=0), "num_blks must be a positive integer, got 0"),
    (dict(img_size=-28), "img_size must be a positive integer"),
    (dict(num_heads=2.0), "num_heads must be a positive integer"),
    (dict(pool="max"), r"pool must be one of \('cls', 'mean'\), got 'max'"),
    (dict(use_bias="yes"), "use_bias must be True or False"),
    (dict(weight_init="he"), r"weight_init must be one of \('trunc_normal', 'xavier'\), got 'he'"),
])
def test_bad_values_raise_a_sentence(overrides, message):
    with pytest.raises(ValueError, match=message):
        ViTConfig.tiny(**overrides)
