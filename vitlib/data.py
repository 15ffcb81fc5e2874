"""Fashion-MNIST for both frameworks, in NumPy only: find the files, parse them, batch them.

Fashion-MNIST (Xiao et al. 2017) is the data set of d2l.ai's "Transformers for Vision" (section
11.8): 28x28 grey images of clothes in 10 classes, 60000 for training and 10000 for testing, stored
in the IDX format of MNIST. Both `vitlib.torch` and `vitlib.jax` train on the NumPy batches made
here, so the two sides see the same examples in the same order for the same seed.
"""

import gzip
import hashlib
import os
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MEAN, STD = 0.2860, 0.3530  # pixel mean and std of the training images, on [0, 1]

FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
URL_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vitlib/fashion-mnist"
# SHA-256 of the *decompressed* IDX bytes. Debian recompressed the .gz files (their MD5s differ
# from the published ones), but the contents are byte-identical to upstream: their MD5s are the
# ones torchvision lists for the raw files (train images f4a8712d7a061bf5bd6d2ca38dc4d50a, ...).
# Checking the contents accepts both, and a download from any faithful mirror.
SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
IDX_MAGIC = {3: 2051, 1: 2049}  # ndim -> magic number: 0x0000 (zeros), 0x08 (uint8), ndim


def _read_gz(path):
    """The decompressed bytes of `path`, or a ValueError naming it."""
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:  # bad header, truncated stream, bad CRC
        raise ValueError(f"{path} is not a valid gzip file ({e}). Delete it and download it "
                         f"again.") from e


def _parse_idx(path, ndim):
    """Parse an IDX file of uint8 with `ndim` dimensions, checking magic, dims and length."""
    data = _read_gz(path)
    header = 4 * (1 + ndim)  # big-endian int32: magic, then one size per dimension
    fix = "Delete it and download it again."
    if len(data) < header:
        raise ValueError(f"{path} is truncated: {len(data)} bytes, shorter than the "
                         f"{header}-byte IDX header. {fix}")
    magic, *dims = np.frombuffer(data[:header], ">i4").tolist()
    if magic != IDX_MAGIC[ndim]:
        raise ValueError(f"{path} has IDX magic number {magic}, expected {IDX_MAGIC[ndim]} (a "
                         f"{ndim}-D uint8 array). Is it the wrong file? {fix}")
    if len(data) - header != int(np.prod(dims)):
        raise ValueError(f"{path} holds {len(data) - header} bytes of data but its header "
                         f"promises {dims} = {int(np.prod(dims))}: it is truncated or "
                         f"corrupt. {fix}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()  # copy: writable


def _search_dirs(root):
    """The places searched, in order, as (description, folder) pairs."""
    places = []
    if root is not None:
        places.append(("root argument", Path(root)))
    elif os.environ.get("VITLIB_DATA"):
        places.append(("$VITLIB_DATA", Path(os.environ["VITLIB_DATA"])))
    return places + [("user cache", Path(CACHE_DIR)), ("system (Debian)", Path(SYSTEM_DIR))]


def _download(name, folder):
    """Download `name` into `folder` atomically: a temporary file, checked, then renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(URL_BASE + name, timeout=60) as r:
            total = int(r.headers.get("Content-Length") or 0) or None
            got = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=name) as bar:
                while chunk := r.read(1 << 16):
                    f.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
        if total is not None and got != total:  # urllib does not notice a dropped connection
            raise OSError(f"connection closed after {got} of {total} bytes of {name}")
        digest = hashlib.sha256(_read_gz(tmp)).hexdigest()
        if digest != SHA256[name]:
            raise ValueError(f"{name} has SHA-256 {digest} once decompressed, expected "
                             f"{SHA256[name]}: the download is corrupt or not Fashion-MNIST")
        os.replace(tmp, folder / name)  # atomic: the cache holds the whole file or nothing
    except BaseException:  # also Ctrl-C: never leave a half-written file behind
        Path(tmp).unlink(missing_ok=True)
        raise


def _not_found(split, places):
    searched = "\n".join(f"  - {what}: {folder}" for what, folder in places)
    return (f"Fashion-MNIST {split} files {' and '.join(FILES[split])} were not found. "
            f"Searched, in order:\n{searched}\nWays to get them:\n"
            f"  - sudo apt-get install dataset-fashion-mnist (puts them in {SYSTEM_DIR});\n"
            f"  - set VITLIB_DATA (or pass root=) to a folder that holds the .gz files;\n"
            f"  - download the four .gz files from {URL_BASE} into {CACHE_DIR};\n"
            f"  - allow the automatic download: unset VITLIB_OFFLINE and check the network.")


def find_fashion_mnist(split="train", root=None):
    """The folder holding the `split` files: the first place searched that has all of them,
    else the user cache after a download.

    Args:
        split: "train" or "test".
        root: a folder to look in first; if None, $VITLIB_DATA is used when set.
    """
    if split not in FILES:
        raise ValueError(f"Expected split 'train' or 'test', got {split!r}.")
    places = _search_dirs(root)
    for _, folder in places:
        if all((folder / name).is_file() for name in FILES[split]):
            return folder
    if os.environ.get("VITLIB_OFFLINE", "0") not in ("", "0"):
        raise FileNotFoundError(_not_found(split, places) + " (VITLIB_OFFLINE is set.)")
    cache = Path(CACHE_DIR)
    try:
        for name in FILES[split]:
            if not (cache / name).is_file():
                _download(name, cache)
    except Exception as e:
        raise RuntimeError(f"Downloading from {URL_BASE} failed: {e}\n"
                           + _not_found(split, places)) from e
    return cache


def load_fashion_mnist(split="train", root=None):
    """Fashion-MNIST as NumPy arrays: images uint8 (N, 28, 28), labels int64 (N,).

    Args:
        split: "train" (60000 examples) or "test" (10000).
        root: a folder with the original IDX .gz files to try first (see `find_fashion_mnist`
            for the search order: root or $VITLIB_DATA, user cache, Debian's folder, download).
    """
    folder = find_fashion_mnist(split, root)
    image_file, label_file = (folder / name for name in FILES[split])
    images = _parse_idx(image_file, ndim=3)  # (N, H, W)
    labels = _parse_idx(label_file, ndim=1).astype(np.int64)  # (N,)
    if len(images) != len(labels):
        raise ValueError(f"{image_file} holds {len(images)} images but {label_file} holds "
                         f"{len(labels)} labels. Delete both and download them again.")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{label_file} holds label {labels.max()}, expected 0..9. Delete it "
                         f"and download it again.")
    return images, labels


def subset(images, labels, n, seed=0):
    """A fixed random subset of `n` examples (kept in their original order).

    Args:
        images, labels: arrays with the same first dimension.
        n: how many examples to keep, 1..len(images).
        seed: the same seed gives the same subset.
    """
    if len(images) != len(labels):
        raise ValueError(f"Expected as many labels as images, got {len(images)} images and "
                         f"{len(labels)} labels.")
    if not 0 < n <= len(images):
        raise ValueError(f"Expected 1 <= n <= {len(images)} (the number of examples), got "
                         f"n={n}. Ask for fewer examples.")
    idx = np.sort(np.random.default_rng(seed).choice(len(images), size=n, replace=False))
    return images[idx], labels[idx]


def _interp_matrix(n_in, n_out):
    """(n_out, n_in) bilinear weights with half-pixel centres, as torch's
    F.interpolate(mode="bilinear", align_corners=False): each row sums to 1."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = (src - i0).astype(np.float32)
    R = np.zeros((n_out, n_in), np.float32)
    np.add.at(R, (np.arange(n_out), i0), 1 - w)
    np.add.at(R, (np.arange(n_out), i1), w)
    return R


def resize(images, img_size):
    """Bilinear resize of a batch to img_size x img_size, as two matrix products (rows, then
    columns) for the whole batch at once: x -> R_h @ x @ R_w^T.

    Args:
        images: float array (B, H, W).
        img_size: side of the output, in pixels.
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 3:
        raise ValueError(f"Expected images (B, H, W), got shape {images.shape}.")
    B, H, W = images.shape
    if (H, W) == (img_size, img_size):
        return images
    R_h, R_w = _interp_matrix(H, img_size), _interp_matrix(W, img_size)
    return R_h @ images @ R_w.T  # (S, H) @ (B, H, W) @ (W, S) -> (B, S, S)


def num_batches(n, batch_size, drop_last=False):
    """How many batches `batches` yields for n examples.

    Args:
        n: number of examples.
        batch_size: examples per batch.
        drop_last: whether the last partial batch is dropped.
    """
    if batch_size <= 0:
        raise ValueError(f"Expected batch_size >= 1, got {batch_size}.")
    return n // batch_size if drop_last else -(-n // batch_size)


def _random_crop(x, pad, rng):
    """Zero-pad (B, H, W) by `pad` pixels and cut back a random H x W window per image."""
    B, H, W = x.shape
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))  # (B, H+2pad, W+2pad)
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, B))  # top-left corner of each window
    rows = dy[:, None, None] + np.arange(H)[None, :, None]  # (B, H, 1)
    cols = dx[:, None, None] + np.arange(W)[None, None, :]  # (B, 1, W)
    return padded[np.arange(B)[:, None, None], rows, cols]  # (B, H, W)


def batches(images, labels, batch_size, *, shuffle=True, seed=0, epoch=0, img_size=None,
            normalize=True, layout="NCHW", flip=False, crop=0, drop_last=False):
    """Yield one epoch of (x float32, y int64) NumPy batches.

    The example order and the augmentation come from np.random.default_rng((seed, epoch)): a
    fresh order every epoch, and the same order again for the same (seed, epoch), so a resumed
    run sees exactly what an uninterrupted one would.

    Args:
        images: uint8 (N, H, W), e.g. from `load_fashion_mnist`.
        labels: int (N,).
        batch_size: examples per batch; the last batch may be smaller (see drop_last).
        shuffle: shuffle the examples (not the batches) each epoch.
        seed, epoch: pick the order and the augmentation.
        img_size: resize to img_size x img_size (bilinear, after augmentation); None keeps H x W.
        normalize: (x - MEAN) / STD after scaling pixels to [0, 1].
        layout: "NCHW" (PyTorch): x is (B, 1, S, S); "NHWC" (JAX): x is (B, S, S, 1).
        flip: flip each image left-right with probability 1/2.
        crop: pad by `crop` background pixels and cut a random window back (a random shift).
        drop_last: drop the last batch if it is smaller than batch_size.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"Expected images as a uint8 array (N, H, W), got "
                         f"{getattr(images, 'dtype', type(images).__name__)} with shape "
                         f"{np.shape(images)}. Use the arrays from load_fashion_mnist.")
    if len(images) != len(labels):
        raise ValueError(f"Expected as many labels as images, got {len(images)} images and "
                         f"{len(labels)} labels.")
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"Expected layout 'NCHW' (PyTorch) or 'NHWC' (JAX), got {layout!r}.")
    if crop < 0:
        raise ValueError(f"Expected crop >= 0 pixels of padding, got {crop}.")
    n_batches = num_batches(len(images), batch_size, drop_last)
    labels = np.asarray(labels)
    rng = np.random.default_rng((seed, epoch))
    order = rng.permutation(len(images)) if shuffle else np.arange(len(images))
    for b in range(n_batches):
        idx = order[b * batch_size:(b + 1) * batch_size]
        x = images[idx].astype(np.float32) / 255  # (B, H, W) on [0, 1], 0 = background
        if flip:
            mirror = rng.random(len(idx)) < 0.5
            x[mirror] = x[mirror, :, ::-1]
        if crop:
            x = _random_crop(x, crop, rng)  # augment at 28x28, before any resize
        if normalize:
            x = (x - MEAN) / STD
        if img_size is not None:
            x = resize(x, img_size)  # (B, H, W) -> (B, S, S)
        x = x[:, None] if layout == "NCHW" else x[..., None]  # add the channel axis C = 1
        yield x.astype(np.float32), labels[idx].astype(np.int64)
