"""Input checks shared by both frameworks, so bad input fails early with a sentence, not deep in
a convolution. They look at shapes only (tuples of ints), never at framework tensors."""

LAYOUTS = {"NCHW": "PyTorch (vitlib.torch) expects images as (B, C, H, W)",
           "NHWC": "JAX (vitlib.jax) expects images as (B, H, W, C)"}


def check_images(shape, cfg, layout):
    """Raise a ValueError unless `shape` is a batch of cfg-sized images in `layout`.

    Args:
        shape: the input's shape, a tuple of ints.
        cfg: the model's ViTConfig.
        layout: "NCHW" (PyTorch) or "NHWC" (JAX).
    """
    shape = tuple(int(s) for s in shape)
    want = ((cfg.in_channels, cfg.img_size, cfg.img_size) if layout == "NCHW"
            else (cfg.img_size, cfg.img_size, cfg.in_channels))
    expected = f"(B, {', '.join(map(str, want))})"
    if len(shape) != 4:
        fix = " Add a batch axis, e.g. x[None]." if len(shape) == 3 else ""
        raise ValueError(f"Expected a 4-D batch of images {expected} ({layout}), got shape "
                         f"{shape} with {len(shape)} dimensions.{fix}")
    if shape[1:] == want:
        return
    other = "NHWC" if layout == "NCHW" else "NCHW"
    # The same image in the other layout: (C, H, W) <-> (H, W, C).
    swapped = (want[1], want[2], want[0]) if layout == "NCHW" else (want[2], want[0], want[1])
    if shape[1:] == swapped and want != swapped:
        fix = "x.permute(0, 3, 1, 2)" if layout == "NCHW" else "x.transpose(0, 2, 3, 1)"
        raise ValueError(f"Got images in {other} layout {shape}, but {LAYOUTS[layout]}; "
                         f"{LAYOUTS[other].split(' expects')[0]} is the framework that takes "
                         f"{other}. Convert with {fix}.")
    c_axis = 1 if layout == "NCHW" else 3
    h_axis = 2 if layout == "NCHW" else 1
    if shape[c_axis] != cfg.in_channels:
        raise ValueError(f"Expected {cfg.in_channels} channel(s) (cfg.in_channels), got "
                         f"{shape[c_axis]} in shape {shape} ({layout}, expected {expected}). "
                         f"Convert the images or build the model with "
                         f"dataclasses.replace(cfg, in_channels={shape[c_axis]}).")
    raise ValueError(f"Expected {cfg.img_size}x{cfg.img_size} images (cfg.img_size), got "
                     f"{shape[h_axis]}x{shape[h_axis + 1]} in shape {shape} ({layout}, expected "
                     f"{expected}). Resize the images (vitlib.data.batches(..., img_size=...)) or "
                     f"build the model with img_size set to the image size.")
