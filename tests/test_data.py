"""Loaders on the staged real data, and on tiny generated files in the real formats where absent."""
import gzip
import hashlib
import pickle
import shutil
import zipfile

import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from PIL import Image

from gpvae import data

from .conftest import data_dir, requires_data


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@requires_data
def test_mnist_splits_and_binarization():
    mnist = data.load("mnist", data_dir())
    assert (len(mnist.train), len(mnist.valid), len(mnist.test)) == (50_000, 10_000, 10_000)
    assert mnist.image_shape == (1, 28, 28) and mnist.likelihood == "bernoulli"
    assert 0.0 <= mnist.train.min() and mnist.train.max() <= 1.0 and len(mnist.train.unique()) > 2
    assert set(mnist.test.unique().tolist()) == {0.0, 1.0}
    again = data.load("mnist", data_dir())
    assert torch.equal(again.test, mnist.test), "the test set must be binarized once, with a fixed seed"
    g = torch.Generator().manual_seed(5)
    batch = mnist.training_batch(mnist.train[:64], g)
    assert set(batch.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(batch, mnist.training_batch(mnist.train[:64], g)), "dynamic binarization resamples"


@requires_data
def test_a_limited_test_set_is_the_first_images_or_a_seeded_draw_that_says_so():
    mnist = data.load("mnist", data_dir())
    first = mnist.limit(max_test=50)
    assert torch.equal(first.test, mnist.test[:50]) and first.test_seed is None
    drawn = mnist.limit(max_test=50, test_seed=3)
    indices = data.test_subset(len(mnist.test), 50, 3)
    assert torch.equal(drawn.test, mnist.test[indices]) and drawn.test_seed == 3
    assert indices.max() > 50 and torch.equal(mnist.limit(max_test=50, test_seed=3).test, drawn.test)
    assert not torch.equal(mnist.limit(max_test=50, test_seed=4).test, drawn.test)
    for whole in (mnist.limit(test_seed=3), mnist.limit(max_test=len(mnist.test), test_seed=3)):
        assert torch.equal(whole.test, mnist.test) and whole.test_seed is None  # every test image: no draw to record


@requires_data
def test_fashion_mnist_keeps_8bit_grey_levels():
    fashion = data.load("fashion_mnist", data_dir())
    assert fashion.likelihood == "logistic" and len(fashion.valid) == 10_000
    assert fashion.test.max() == 255 and torch.equal(fashion.test, fashion.test.round())


@requires_data
def test_omniglot_is_resized_to_28_and_split():
    omni = data.load("omniglot", data_dir())
    assert omni.image_shape == (1, 28, 28)
    assert (len(omni.train) + len(omni.valid), len(omni.test)) == (19_280, 13_180)
    assert 0.02 < omni.train.mean() < 0.3, "ink (=1) should be the minority of pixels"
    assert "resized" in omni.description


def test_missing_data_names_files_folder_and_remedy(tmp_path):
    with pytest.raises(data.DataError) as err:
        data.load("mnist", tmp_path)
    message = str(err.value)
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path / "MNIST" / "raw") in message
    assert "--download" in message and "--data-dir" in message


@requires_data
def test_corrupt_gz_is_reported(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(data_dir() / "MNIST" / "raw", raw)
    (raw / "t10k-labels-idx1-ubyte.gz").chmod(0o644)
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(data.DataError, match="corrupt.*t10k-labels-idx1-ubyte.gz"):
        data.load("mnist", tmp_path)


def test_decompression_never_shows_a_partial_file_under_the_final_name(tmp_path, monkeypatch):
    # two training jobs started together decompress MNIST into one cache: a reader must never find a
    # half-written file under the final name (the workflow once failed on exactly that)
    source, target = tmp_path / "images.gz", tmp_path / "cache" / "images"
    target.parent.mkdir()
    source.write_bytes(gzip.compress(bytes(range(256)) * 1000))
    copy = shutil.copyfileobj

    def copy_and_look(packed, unpacked):
        copy(packed, unpacked)
        assert not target.exists()  # written in full under another name first

    monkeypatch.setattr(data.shutil, "copyfileobj", copy_and_look)
    data._gunzip_once(source, target)
    assert target.read_bytes() == bytes(range(256)) * 1000 and list(target.parent.iterdir()) == [target]
    before = target.stat().st_mtime_ns
    data._gunzip_once(source, target)  # present: left alone
    assert target.stat().st_mtime_ns == before


def test_extraction_never_shows_a_partial_folder_under_the_final_name(tmp_path, monkeypatch):
    # the Omniglot zips of torchvision's layout are extracted into the cache the way MNIST is decompressed
    archive, target = tmp_path / "images_background.zip", tmp_path / "cache" / "images_background"
    target.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("images_background/Alphabet/character01/0001_01.png", b"png bytes")
    extract = data.extract_archive

    def extract_and_look(source, folder):
        extract(source, folder)
        assert not target.exists()  # extracted in full under another name first

    monkeypatch.setattr(data, "extract_archive", extract_and_look)
    data._extract_once(archive, target)
    assert (target / "Alphabet" / "character01" / "0001_01.png").read_bytes() == b"png bytes"
    assert list(target.parent.iterdir()) == [target]
    before = target.stat().st_mtime_ns
    data._extract_once(archive, target)  # present: left alone
    assert target.stat().st_mtime_ns == before


def test_a_failed_extraction_leaves_no_folder_behind(tmp_path):
    archive, target = tmp_path / "images_background.zip", tmp_path / "cache" / "images_background"
    target.parent.mkdir()
    archive.write_bytes(b"not a zip")
    with pytest.raises(zipfile.BadZipFile):
        data._extract_once(archive, target)
    assert list(target.parent.iterdir()) == []


def test_a_failed_decompression_leaves_no_file_behind(tmp_path):
    source, target = tmp_path / "images.gz", tmp_path / "cache" / "images"
    target.parent.mkdir()
    source.write_bytes(b"not gzip")
    with pytest.raises(OSError):
        data._gunzip_once(source, target)
    assert list(target.parent.iterdir()) == []


def test_unknown_dataset():
    with pytest.raises(ValueError, match="choose one of mnist"):
        data.load("imagenet")


# ----------------------------------------------------------------------------------------------- #
# Generated files in the real formats, with torchvision's published checksums swapped for theirs.

def _write_cifar(root, n=6):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(range(n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    return folder


def test_cifar10_reads_the_python_pickle_format(tmp_path, monkeypatch):
    folder = _write_cifar(tmp_path)
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[f"data_batch_{i}", _md5(folder / f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(cls, "test_list", [["test_batch", _md5(folder / "test_batch")]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(folder / "batches.meta")})
    monkeypatch.setattr(data, "_split_train", lambda x, n_valid: (x[:-3], x[-3:]))
    cifar = data.load("cifar10", tmp_path)
    assert cifar.image_shape == (3, 32, 32) and cifar.likelihood == "logistic"
    assert (len(cifar.train), len(cifar.valid), len(cifar.test)) == (27, 3, 6)
    (folder / "test_batch").write_bytes(b"corrupt")
    with pytest.raises(data.DataError, match="md5"):
        data.load("cifar10", tmp_path)


def test_cifar10_missing(tmp_path):
    with pytest.raises(data.DataError, match="data_batch_1"):
        data.load("cifar10", tmp_path)


def test_svhn_reads_the_mat_format(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    split_list = {}
    for split, n in (("train", 20), ("test", 7)):
        name = f"{split}_32x32.mat"
        scipy.io.savemat(tmp_path / name, {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                           "y": rng.integers(1, 11, (n, 1))})
        split_list[split] = ["url", name, _md5(tmp_path / name)]
    monkeypatch.setattr(torchvision.datasets.SVHN, "split_list", split_list)
    svhn = data.load("svhn", tmp_path)
    assert svhn.image_shape == (3, 32, 32)
    assert (len(svhn.train), len(svhn.valid), len(svhn.test)) == (18, 2, 7)


def test_celeba_reads_aligned_jpegs_and_partition(tmp_path, monkeypatch):
    folder = tmp_path / "celeba"
    images = folder / "img_align_celeba"
    images.mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, 7)]
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(images / name)
    partition = [0, 0, 1, 1, 2, 2]  # torchvision cannot index a split of one image
    (folder / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, partition)))
    (folder / "identity_CelebA.txt").write_text("".join(f"{n} 1\n" for n in names))
    (folder / "list_attr_celeba.txt").write_text(f"{len(names)}\nSmiling Young\n" + "".join(f"{n} 1 -1\n" for n in names))
    (folder / "list_bbox_celeba.txt").write_text(f"{len(names)}\nimage_id x_1 y_1 width height\n" + "".join(f"{n} 1 2 3 4\n" for n in names))
    (folder / "list_landmarks_align_celeba.txt").write_text(f"{len(names)}\nlefteye_x lefteye_y\n" + "".join(f"{n} 5 6\n" for n in names))
    files = ["list_eval_partition.txt", "identity_CelebA.txt", "list_attr_celeba.txt", "list_bbox_celeba.txt",
             "list_landmarks_align_celeba.txt"]
    monkeypatch.setattr(torchvision.datasets.CelebA, "file_list", [("id", _md5(folder / f), f) for f in files])
    celeba = data.load("celeba", tmp_path)
    assert celeba.image_shape == (3, 64, 64)
    assert (len(celeba.train), len(celeba.valid), len(celeba.test)) == (2, 2, 2)


def test_omniglot_npz_is_checksummed(tmp_path):
    folder = tmp_path / "omniglot-npz"
    folder.mkdir()
    np.savez_compressed(folder / "images_background.npz", images=np.ones((2, 20, 105, 105), bool),
                        labels=np.zeros((2, 20)))
    with pytest.raises(data.DataError, match="corrupt"):
        data.load("omniglot", tmp_path)
