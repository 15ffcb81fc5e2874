"""Tests for vitlib.data: finding, downloading and parsing the IDX files, and the batches.

Everything runs offline: tiny IDX files written here, a local HTTP server for the download, and
the real files of Debian's dataset-fashion-mnist package (installed on CI).
"""

import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from vitlib import data

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
# MD5s of the decompressed upstream files (as torchvision lists them): cross-checks that the
# contents behind our SHA-256 table are the published Fashion-MNIST.
UPSTREAM_RAW_MD5 = {
    "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
}


# ---------------------------------------------------------------- tiny IDX files

def idx_bytes(arr, magic=None):
    """The IDX encoding of a uint8 array: magic, big-endian sizes, then the bytes."""
    arr = np.asarray(arr, np.uint8)
    magic = data.IDX_MAGIC[arr.ndim] if magic is None else magic
    return np.array([magic, *arr.shape], ">i4").tobytes() + arr.tobytes()


def write_idx(path, arr, magic=None):
    Path(path).write_bytes(gzip.compress(idx_bytes(arr, magic)))
    return Path(path)


def tiny_images(n):
    """n images whose pixels encode their id: left half id+1, right half 200-id (a flip shows)."""
    images = np.zeros((n, 28, 28), np.uint8)
    ids = np.arange(n)
    images[:, :, :14] = (ids + 1)[:, None, None]
    images[:, :, 14:] = (200 - ids)[:, None, None]
    return images


def write_split(folder, split="train", n=12):
    """Write a tiny valid `split` into `folder`; returns (images, labels)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = tiny_images(n), np.arange(n) % 10
    image_name, label_name = data.FILES[split]
    write_idx(folder / image_name, images)
    write_idx(folder / label_name, labels)
    return images, labels


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Point the cache and system folders at empty temporary ones, and stay offline."""
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.delenv("VITLIB_DATA", raising=False)
    monkeypatch.setenv("VITLIB_OFFLINE", "1")
    return tmp_path


# ---------------------------------------------------------------- finding and parsing

def test_load_tiny_split(tmp_path):
    images, labels = write_split(tmp_path / "d", "test", n=7)
    x, y = data.load_fashion_mnist("test", root=tmp_path / "d")
    assert x.dtype == np.uint8 and x.shape == (7, 28, 28)
    assert y.dtype == np.int64 and y.shape == (7,)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    x[0, 0, 0] = 9  # the arrays are writable copies
    with pytest.raises(ValueError, match="split"):
        data.load_fashion_mnist("validation", root=tmp_path / "d")


def test_search_order(tmp_path, monkeypatch):
    # Each place holds a split of a different size, so the size tells which place was used.
    write_split(tmp_path / "root", n=1)
    write_split(tmp_path / "env", n=2)
    write_split(data.CACHE_DIR, n=3)
    write_split(data.SYSTEM_DIR, n=4)
    monkeypatch.setenv("VITLIB_DATA", str(tmp_path / "env"))

    def size(root=None):
        return len(data.load_fashion_mnist("train", root=root)[0])

    assert size(tmp_path / "root") == 1  # root beats $VITLIB_DATA
    assert size() == 2  # $VITLIB_DATA beats the cache
    assert size(tmp_path / "missing") == 3  # a root replaces $VITLIB_DATA, it does not add to it
    monkeypatch.delenv("VITLIB_DATA")
    assert size() == 3  # the cache beats the system folder
    (data.CACHE_DIR / data.FILES["train"][1]).unlink()  # an incomplete place is skipped
    assert size() == 4
    assert size(tmp_path / "missing") == 4  # an empty root falls through too


@pytest.mark.parametrize("damage", ["wrong magic", "truncated", "corrupt gzip",
                                    "truncated gzip", "label count", "label value"])
def test_bad_files_raise_naming_the_file(tmp_path, damage):
    folder = tmp_path / "d"
    write_split(folder, n=5)
    image_file, label_file = (folder / name for name in data.FILES["train"])
    bad = image_file
    if damage == "wrong magic":
        write_idx(image_file, tiny_images(5), magic=2049)
    elif damage == "truncated":  # the header promises 5 images, the payload holds 4.5
        raw = idx_bytes(tiny_images(5))
        image_file.write_bytes(gzip.compress(raw[:-28 * 14]))
    elif damage == "corrupt gzip":  # flip bytes in the middle of the deflate stream
        raw = bytearray(image_file.read_bytes())
        raw[len(raw) // 2:len(raw) // 2 + 8] = bytes(8)
        image_file.write_bytes(bytes(raw))
    elif damage == "truncated gzip":
        image_file.write_bytes(image_file.read_bytes()[:-20])
    elif damage == "label count":
        write_idx(label_file, np.arange(4))
    elif damage == "label value":
        bad = label_file
        write_idx(label_file, np.array([0, 1, 2, 3, 10]))
    with pytest.raises(ValueError, match="download") as err:
        data.load_fashion_mnist("train", root=folder)
    assert str(bad) in str(err.value)


def test_offline_with_nothing_lists_every_place_and_way(tmp_path, monkeypatch):
    monkeypatch.setenv("VITLIB_DATA", str(tmp_path / "env"))
    with pytest.raises(FileNotFoundError) as err:
        data.load_fashion_mnist("train")
    msg = str(err.value)
    for needle in [str(tmp_path / "env"), str(data.CACHE_DIR), str(data.SYSTEM_DIR),
                   "apt-get install dataset-fashion-mnist", "VITLIB_DATA", data.URL_BASE,
                   "VITLIB_OFFLINE", "train-images-idx3-ubyte.gz"]:
        assert needle in msg, needle


# ---------------------------------------------------------------- download

@pytest.fixture
def server(monkeypatch):
    """A local HTTP server serving `files` (name -> bytes); names in `drop` are cut mid-file."""

    class Handler(http.server.BaseHTTPRequestHandler):
        files, drop, requests = {}, set(), []

        def do_GET(self):
            name = self.path.lstrip("/")
            self.requests.append(name)
            if name not in self.files:
                self.send_error(404)
                return
            body = self.files[name]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # HTTP/1.0: the connection closes when the handler returns, half-way if dropped.
            self.wfile.write(body[:len(body) // 2] if name in self.drop else body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(data, "URL_BASE", f"http://127.0.0.1:{httpd.server_port}/")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("VITLIB_OFFLINE")
    yield Handler
    httpd.shutdown()
    httpd.server_close()


def serve_tiny_split(server, monkeypatch, n=6):
    """Serve a tiny test split and make the checksum table expect it."""
    images, labels = tiny_images(n), np.arange(n) % 10
    table = dict(data.SHA256)
    for name, arr in zip(data.FILES["test"], (images, labels)):
        server.files[name] = gzip.compress(idx_bytes(arr))
        table[name] = hashlib.sha256(idx_bytes(arr)).hexdigest()
    monkeypatch.setattr(data, "SHA256", table)
    return images, labels


def test_download_writes_to_cache(server, monkeypatch):
    images, labels = serve_tiny_split(server, monkeypatch)
    x, y = data.load_fashion_mnist("test")
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)
    assert sorted(p.name for p in data.CACHE_DIR.iterdir()) == sorted(data.FILES["test"])
    assert len(server.requests) == 2
    data.load_fashion_mnist("test")  # now found in the cache: no new request
    assert len(server.requests) == 2


@pytest.mark.parametrize("failure", ["checksum", "dropped", "missing"])
def test_failed_download_leaves_nothing(server, monkeypatch, failure):
    serve_tiny_split(server, monkeypatch)
    images_name = data.FILES["test"][0]
    if failure == "checksum":
        monkeypatch.setitem(data.SHA256, images_name, "0" * 64)
    elif failure == "dropped":
        server.drop.add(images_name)
    else:
        del server.files[images_name]
    with pytest.raises(RuntimeError) as err:
        data.load_fashion_mnist("test")
    assert images_name in server.requests
    assert not data.CACHE_DIR.exists() or list(data.CACHE_DIR.iterdir()) == []
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "VITLIB_DATA" in msg
    expected = {"checksum": "SHA-256", "dropped": "connection closed", "missing": "404"}[failure]
    assert expected in msg


# ---------------------------------------------------------------- batches

def epoch_ids(n=50, batch_size=8, **kw):
    images, ids = tiny_images(n), np.arange(n)
    return [y for _, y in data.batches(images, ids, batch_size, **kw)]


def test_shuffle_is_a_fresh_reproducible_permutation_of_examples():
    n, bs = 50, 8
    e0 = epoch_ids(n, bs, seed=0, epoch=0)
    np.testing.assert_array_equal(np.sort(np.concatenate(e0)), np.arange(n))  # each once
    assert not np.array_equal(np.concatenate(e0), np.arange(n))
    # Examples are shuffled, not batches: the first batch is not a block of consecutive ids.
    blocks = [set(range(k, min(k + bs, n))) for k in range(0, n, bs)]
    assert set(e0[0].tolist()) not in blocks
    same = epoch_ids(n, bs, seed=0, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(e0, same))
    for other in (dict(seed=0, epoch=1), dict(seed=1, epoch=0)):
        assert not np.array_equal(np.concatenate(epoch_ids(n, bs, **other)), np.concatenate(e0))
    np.testing.assert_array_equal(np.concatenate(epoch_ids(n, bs, shuffle=False)), np.arange(n))


@pytest.mark.parametrize("layout,img_size,shape", [("NCHW", None, (8, 1, 28, 28)),
                                                   ("NHWC", None, (8, 28, 28, 1)),
                                                   ("NCHW", 32, (8, 1, 32, 32)),
                                                   ("NHWC", 16, (8, 16, 16, 1))])
def test_batch_shapes_and_dtypes(layout, img_size, shape):
    out = list(data.batches(tiny_images(20), np.arange(20), 8, layout=layout, img_size=img_size))
    assert [len(y) for _, y in out] == [8, 8, 4]
    x, y = out[0]
    assert x.shape == shape and x.dtype == np.float32 and y.dtype == np.int64


def test_normalize_values():
    images = tiny_images(4)
    raw = next(data.batches(images, np.arange(4), 4, shuffle=False, normalize=False))[0]
    norm = next(data.batches(images, np.arange(4), 4, shuffle=False))[0]
    np.testing.assert_allclose(raw[:, 0], images / 255, rtol=1e-6)
    np.testing.assert_allclose(norm, (raw - data.MEAN) / data.STD, rtol=1e-5)
    np.testing.assert_allclose(next(data.batches(np.zeros((1, 28, 28), np.uint8), [0], 1))[0],
                               -data.MEAN / data.STD, rtol=1e-6)


def test_flip_and_crop_keep_labels_aligned():
    n, crop = 40, 3
    images = tiny_images(n).astype(np.float32) / 255
    padded = np.pad(images, ((0, 0), (crop, crop), (crop, crop)))
    flipped = shifted = 0
    for x, y in data.batches(tiny_images(n), np.arange(n), 16, flip=True, crop=crop,
                             normalize=False, layout="NHWC", seed=3):
        for xi, i in zip(x[..., 0], y):  # the label is the id written in the pixels
            views = (padded[i], padded[i][:, ::-1])  # as is, mirrored
            windows = [(mirror, dy, dx) for mirror, p in enumerate(views)
                       for dy in range(2 * crop + 1) for dx in range(2 * crop + 1)
                       if np.array_equal(xi, p[dy:dy + 28, dx:dx + 28])]
            assert len(windows) == 1, f"example {i} is not one flipped/shifted copy of image {i}"
            mirror, dy, dx = windows[0]
            flipped += mirror
            shifted += (dy, dx) != (crop, crop)
    assert 0 < flipped < n and shifted > n // 2
    # Augmentation is also a pure function of (seed, epoch).
    def run(epoch):
        return [x for x, _ in data.batches(tiny_images(n), np.arange(n), 16, flip=True,
                                           crop=crop, seed=3, epoch=epoch)]

    assert all(np.array_equal(a, b) for a, b in zip(run(0), run(0)))
    assert not all(np.array_equal(a, b) for a, b in zip(run(0), run(1)))


def test_drop_last_and_num_batches():
    def sizes(**kw):
        return [len(y) for _, y in data.batches(tiny_images(10), np.arange(10), 4, **kw)]

    assert sizes() == [4, 4, 2] and data.num_batches(10, 4) == 3
    assert sizes(drop_last=True) == [4, 4] and data.num_batches(10, 4, drop_last=True) == 2
    assert data.num_batches(8, 4) == data.num_batches(8, 4, drop_last=True) == 2


@pytest.mark.parametrize("kwargs,match", [
    (dict(batch_size=0), "batch_size"),
    (dict(labels=np.arange(3)), "labels"),
    (dict(images=np.zeros((4, 28, 28), np.float32)), "uint8"),
    (dict(images=np.zeros((4, 784), np.uint8)), "uint8"),
    (dict(layout="CHW"), "NCHW"),
    (dict(crop=-1), "crop"),
])
def test_batches_rejects_bad_input(kwargs, match):
    args = dict(images=tiny_images(4), labels=np.arange(4), batch_size=2) | kwargs
    with pytest.raises(ValueError, match=match):
        next(data.batches(args.pop("images"), args.pop("labels"), args.pop("batch_size"), **args))


# ---------------------------------------------------------------- resize and subset

def test_resize():
    rng = np.random.default_rng(0)
    x = rng.random((3, 28, 28), dtype=np.float32)
    assert data.resize(x, 28) is x or np.array_equal(data.resize(x, 28), x)  # identity
    assert data.resize(x, 96).shape == (3, 96, 96) and data.resize(x, 96).dtype == np.float32
    const = np.full((2, 28, 28), 0.7, np.float32)
    for size in (14, 40, 96):
        np.testing.assert_allclose(data.resize(const, size), 0.7, rtol=1e-6)
    import torch  # the reference: torch's bilinear resize without corner alignment
    import torch.nn.functional as F
    for size in (14, 40, 96):
        ref = F.interpolate(torch.from_numpy(x)[:, None], size=(size, size), mode="bilinear",
                            align_corners=False)[:, 0].numpy()
        np.testing.assert_allclose(data.resize(x, size), ref, atol=1e-5)


def test_subset():
    images, ids = tiny_images(30), np.arange(30)
    x, y = data.subset(images, ids, 10, seed=1)
    assert x.shape == (10, 28, 28) and len(np.unique(y)) == 10
    np.testing.assert_array_equal(x, images[y])  # pairs stay aligned
    np.testing.assert_array_equal(data.subset(images, ids, 10, seed=1)[1], y)  # fixed
    assert not np.array_equal(data.subset(images, ids, 10, seed=2)[1], y)
    for n in (0, 31):
        with pytest.raises(ValueError, match="n="):
            data.subset(images, ids, n)


# ---------------------------------------------------------------- the real files

@pytest.fixture
def real(monkeypatch):
    assert all((REAL_DIR / name).is_file() for pair in data.FILES.values() for name in pair), (
        "install Debian's dataset-fashion-mnist package")
    monkeypatch.setattr(data, "SYSTEM_DIR", REAL_DIR)


@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_real_fashion_mnist(real, split, n):
    images, labels = data.load_fashion_mnist(split)
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels), [n // 10] * 10)
    if split == "train":
        x = images / 255
        assert abs(x.mean() - data.MEAN) < 1e-3 and abs(x.std() - data.STD) < 1e-3
    for name in data.FILES[split]:
        content = gzip.decompress((REAL_DIR / name).read_bytes())
        assert hashlib.sha256(content).hexdigest() == data.SHA256[name]
        assert hashlib.md5(content).hexdigest() == UPSTREAM_RAW_MD5[name]
