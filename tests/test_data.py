"""Datasets, the loader's batching and seeded order, batch transforms, the CIFAR reader."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

import minitorch_resnext as mr
from minitorch_resnext import data
from minitorch_resnext.data import transforms as T


def images(n=10, c=1, h=4, w=4):
    return np.arange(n * c * h * w, dtype=np.float32).reshape(n, c, h, w)


# ----- datasets and loader --------------------------------------------------------------------
def test_tensor_dataset():
    ds = data.TensorDataset(images(), np.arange(10))
    x, y = ds[3]
    assert x.shape == (1, 4, 4) and y == 3 and len(ds) == 10
    with pytest.raises(ValueError, match="Size mismatch"):
        data.TensorDataset(images(), np.arange(9))


def test_loader_batches_cover_the_data_once():
    ds = data.TensorDataset(images(), np.arange(10))
    loader = data.DataLoader(ds, batch_size=4, shuffle=True, seed=3)
    batches = list(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [4, 4, 2]
    x, y = batches[0]
    assert isinstance(x, mr.Tensor) and x.dtype == mr.float32 and y.dtype == mr.int64
    labels = np.concatenate([y.numpy() for _, y in batches])
    assert sorted(labels) == list(range(10)) and labels.tolist() != list(range(10))
    # inputs travel with their labels
    for x, y in batches:
        np.testing.assert_array_equal(x.numpy(), images()[y.numpy()])
    dropped = data.DataLoader(ds, batch_size=4, drop_last=True)
    assert len(dropped) == 2 and [len(y) for _, y in dropped] == [4, 4]


def test_loader_order_depends_only_on_seed_and_epoch():
    ds = data.TensorDataset(images(), np.arange(10))

    def order(seed, epoch):
        loader = data.DataLoader(ds, batch_size=3, shuffle=True, seed=seed)
        loader.set_epoch(epoch)
        return np.concatenate([y.numpy() for _, y in loader]).tolist()

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    loader = data.DataLoader(ds, batch_size=3, shuffle=True, seed=0)
    first = np.concatenate([y.numpy() for _, y in loader]).tolist()
    second = np.concatenate([y.numpy() for _, y in loader]).tolist()  # iteration advances epoch
    assert (first, second) == (order(0, 0), order(0, 1))
    unshuffled = data.DataLoader(ds, batch_size=3)
    assert np.concatenate([y.numpy() for _, y in unshuffled]).tolist() == list(range(10))


def test_loader_augmentation_is_seeded_per_epoch():
    ds = data.TensorDataset(images(8, 1, 6, 6), np.arange(8))

    def run(epoch):
        loader = data.DataLoader(ds, batch_size=4, shuffle=True,
                                 transform=T.RandomCrop(6, padding=2), seed=5)
        loader.set_epoch(epoch)
        return np.concatenate([x.numpy() for x, _ in loader])

    np.testing.assert_array_equal(run(2), run(2))
    assert not np.array_equal(run(2), run(3))


class PerItem(data.Dataset):
    """A dataset without `__getitems__`: the loader falls back to one call per sample."""

    def __getitem__(self, i):
        return np.full((2,), i, dtype=np.float32), i

    def __len__(self):
        return 5


def test_loader_collates_per_item_datasets():
    x, y = next(iter(data.DataLoader(PerItem(), batch_size=5)))
    assert x.shape == (5, 2) and y.tolist() == [0, 1, 2, 3, 4]


def test_digits_split_is_fixed_stratified_and_upsampled():
    train, test = data.Digits(train=True), data.Digits(train=False)
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train.data.shape[1:] == (1, 16, 16) and train.num_classes == 10
    assert 0.0 <= train.data.min() and train.data.max() <= 1.0
    counts = np.bincount(test.targets, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class
    # the split is a partition, the same on every call
    assert np.array_equal(data.Digits(train=False).targets, test.targets)
    small = data.Digits(train=False, size=8)
    assert small.data.shape[1:] == (1, 8, 8)
    # bilinear upsampling preserves each image's mean brightness up to border effects
    np.testing.assert_allclose(test.data.mean(axis=(1, 2, 3)), small.data.mean(axis=(1, 2, 3)),
                               atol=0.02)


def test_fake_data_and_registry():
    ds = data.get_dataset("synthetic", train=True, size=6, image_size=(2, 5, 3), num_classes=4)
    assert ds.data.shape == (6, 2, 5, 3) and ds.targets.max() < 4 and ds.num_classes == 4
    again = data.FakeData(size=6, image_size=(2, 5, 3), num_classes=4, seed=0)
    np.testing.assert_array_equal(ds.data, again.data)
    with pytest.raises(ValueError, match="unknown dataset"):
        data.get_dataset("mnist")
    with pytest.raises(ValueError, match="data folder"):
        data.get_dataset("cifar10")


# ----- transforms ---------------------------------------------------------------------------
def test_random_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = images(16, 2, 5, 5) + 1  # no zeros inside the images
    out = T.RandomCrop(5, padding=2)(x, np.random.default_rng(0))
    assert out.shape == x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    shifts = set()
    for i in range(len(x)):
        found = [(a, b) for a in range(5) for b in range(5)
                 if np.array_equal(out[i], padded[i, :, a:a + 5, b:b + 5])]
        assert found, f"image {i} is not a window of its padded image"
        shifts.add(found[0])
    assert len(shifts) > 3  # each image draws its own offset
    assert T.RandomCrop((3, 4))(x, np.random.default_rng(0)).shape == (16, 2, 3, 4)
    with pytest.raises(ValueError, match="larger"):
        T.RandomCrop(10, padding=2)(x)


def test_horizontal_flip():
    x = images(32, 3, 2, 4)
    out = T.RandomHorizontalFlip()(x, np.random.default_rng(0))
    flipped = np.array([np.array_equal(o, i[..., ::-1]) for o, i in zip(out, x)])
    kept = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    assert np.all(flipped | kept) and 5 < flipped.sum() < 27
    assert np.array_equal(T.RandomHorizontalFlip(p=0.0)(x), x)
    assert np.array_equal(T.RandomHorizontalFlip(p=1.0)(x), x[..., ::-1])


def test_normalize_and_compose():
    x = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 3.0)])[None].astype(np.float32)
    out = T.Normalize([1.0, 2.0], [0.5, 4.0])(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0, 0], [0.0, 0.25])
    pipeline = T.Compose([T.RandomHorizontalFlip(p=1.0), T.Normalize([1.0, 2.0], [0.5, 4.0])])
    np.testing.assert_allclose(pipeline(x), out)
    with pytest.raises(ValueError, match="channel"):
        T.Normalize([0.0], [1.0])(x)
    with pytest.raises(ValueError, match="batch of images"):
        T.Normalize([0.0], [1.0])(x[0])


def test_transforms_default_to_the_engine_generator():
    x = images(8, 1, 4, 4)
    mr.manual_seed(7)
    a = T.RandomCrop(4, padding=1)(x)
    mr.manual_seed(7)
    b = T.RandomCrop(4, padding=1)(x)
    np.testing.assert_array_equal(a, b)


# ----- CIFAR --------------------------------------------------------------------------------
def write_batch(path, n, seed, label_key=b"labels"):
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"testing batch", label_key: rng.integers(0, 10, n).tolist(),
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [f"img{i}.png".encode() for i in range(n)]}
    with open(path, "wb") as f:
        # protocol 4 stores bytes and arrays as the published (Python 2) files do, with no
        # helper functions (protocol 2 from Python 3 would call _codecs.encode)
        pickle.dump(batch, f, protocol=4)
    return batch


@pytest.fixture
def cifar10_root(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batches = [write_batch(folder / f"data_batch_{i}", 3, seed=i) for i in range(1, 6)]
    write_batch(folder / "test_batch", 4, seed=9)
    return tmp_path, batches


def test_cifar10_reads_the_python_layout(cifar10_root):
    root, batches = cifar10_root
    train = data.CIFAR10(root, train=True)
    assert len(train) == 15 and train.data.shape == (15, 3, 32, 32) and train.num_classes == 10
    assert train.targets.tolist() == sum((b[b"labels"] for b in batches), [])
    # rows are 1024 red, then green, then blue values in row-major order
    assert train.data[4, 1, 0, 2] == batches[1][b"data"][1, 1024 + 2]
    x, y = next(iter(data.DataLoader(train, batch_size=4)))
    assert x.dtype == mr.float32 and float(x.numpy().max()) <= 1.0
    np.testing.assert_allclose(x.numpy()[0], train.data[0] / 255, rtol=1e-6)
    test = data.get_dataset("cifar10", train=False, root=root / "cifar-10-batches-py")
    assert len(test) == 4


def test_cifar100_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    batch = write_batch(folder / "train", 5, seed=1, label_key=b"fine_labels")
    ds = data.CIFAR100(tmp_path, train=True)
    assert ds.targets.tolist() == batch[b"fine_labels"] and ds.num_classes == 100


def test_cifar_names_the_missing_file(cifar10_root):
    root, _ = cifar10_root
    os.remove(root / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        data.CIFAR10(root, train=True)


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload", [
    {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": Exploit()},
    {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": np.float64(1.0)},  # a scalar
    {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": complex(1, 2)},
])
def test_cifar_refuses_a_pickle_holding_anything_else(cifar10_root, payload, capfd):
    root, _ = cifar10_root
    with open(root / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump(payload, f, protocol=4)
    with pytest.raises(ValueError, match="refusing to load"):
        data.CIFAR10(root, train=False)
    assert "pwned" not in capfd.readouterr().out


def test_cifar_rejects_malformed_batches(cifar10_root):
    root, _ = cifar10_root
    path = root / "cifar-10-batches-py" / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, f, protocol=4)
    with pytest.raises(ValueError, match="shape"):
        data.CIFAR10(root, train=False)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="test_batch"):
        data.CIFAR10(root, train=False)
