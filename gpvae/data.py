"""Datasets, splits and binarization, exactly as the specification (book/specification.md) §4 fixes them.

Every dataset is read through torchvision's dataset classes and file formats and held in memory
as tensors of shape (N, C, H, W):

=============  ==========  ===========================================  ==================
name           likelihood  train / valid / test                          pixels
=============  ==========  ===========================================  ==================
mnist          bernoulli   first 50,000 / last 10,000 train / 10,000     grey in [0, 1]
fashion_mnist  logistic    first 50,000 / last 10,000 train / 10,000     uint8 0..255
omniglot       bernoulli   background minus 10% (seeded) / 10% / eval.   grey in [0, 1]
cifar10        logistic    first 45,000 / last 5,000 train / 10,000      uint8 0..255
svhn           logistic    first 90% / last 10% of train / test          uint8 0..255
celeba         logistic    official train / valid / test (64x64 crop)    uint8 0..255
=============  ==========  ===========================================  ==================

Binary datasets keep the training images in grey levels and are binarized *dynamically*, a new
Bernoulli draw per minibatch (:meth:`ImageData.training_batch`); validation and test images are
binarized *once* with the fixed seeds :data:`VALID_BINARIZATION_SEED` and
:data:`TEST_BINARIZATION_SEED`. Omniglot is resized from 105x105 to 28x28 with torchvision's
antialiased bilinear resize: it is "Omniglot-28 (resized)", not Burda et al.'s ``chardata.mat``.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as TF
from torchvision.datasets.utils import check_integrity, extract_archive

from .io import atomic_write

DATASETS = ("mnist", "fashion_mnist", "omniglot", "cifar10", "svhn", "celeba")
TEST_BINARIZATION_SEED = 0
VALID_BINARIZATION_SEED = 1
SPLIT_SEED = 0
OMNIGLOT_SIDE = 28
CELEBA_CROP, CELEBA_SIDE = 148, 64

# sha256 of the .npz copies of Omniglot described in shared/data/README.md.
OMNIGLOT_NPZ_SHA256 = {
    "images_background.npz": "8bf84167413cd00beacdce3fe582f780ab538d8dbef043a6d688f2527bbce199",
    "images_evaluation.npz": "0b84c7ffd94c4841c0040e529c86a82eaaccb986d8eadad5673f7991b7475276",
}


class DataError(RuntimeError):
    """Missing or corrupt data; the message names the files, the folder and how to get them."""


def default_data_dir() -> Path:
    """``$GPVAE_DATA_DIR`` if set, else ``~/.cache/gpvae/data``."""
    return Path(os.environ.get("GPVAE_DATA_DIR") or Path.home() / ".cache" / "gpvae" / "data")


def cache_dir() -> Path:
    """Writable folder for decompressed and resized copies: ``$GPVAE_CACHE_DIR`` or ``~/.cache/gpvae``."""
    return Path(os.environ.get("GPVAE_CACHE_DIR") or Path.home() / ".cache" / "gpvae")


@dataclass
class ImageData:
    """A dataset's three splits, each a float tensor (N, C, H, W).

    ``likelihood`` is ``"bernoulli"`` (pixels in [0, 1]; train holds grey levels, valid/test are
    binarized once) or ``"logistic"`` (pixel values 0..255, discretized logistic likelihood).
    """

    name: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    likelihood: str
    description: str
    test_seed: int | None = None  # the seed that drew ``test`` from the test split (None: its first images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])

    @property
    def n_dims(self) -> int:
        return int(np.prod(self.image_shape))

    def training_batch(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Dynamic binarization for binary data (one Bernoulli draw per call); identity otherwise."""
        if self.likelihood == "bernoulli":
            return torch.bernoulli(x, generator=generator)
        return x

    def limit(self, max_train: int | None = None, max_test: int | None = None,
              test_seed: int | None = None) -> "ImageData":
        """The first ``max_train`` training images and ``max_test`` test images: the first ones, or with a
        ``test_seed`` drawn at random (:func:`test_subset`; recorded as ``test_seed``). Validation is kept."""
        test, seed = self.test, None
        if max_test is not None and max_test < len(self.test):
            test, seed = self.test[test_subset(len(self.test), max_test, test_seed)], test_seed
        return ImageData(self.name, self.train[:max_train], self.valid, test, self.likelihood, self.description, seed)


def test_subset(n_test: int, size: int, seed: int | None = None) -> torch.Tensor:
    """Indices (size,) of a test subset: the first ``size`` images, or with a ``seed`` ``size`` distinct
    images drawn by a generator seeded with it, in increasing order."""
    if not 1 <= size <= n_test:
        raise ValueError(f"a subset of {size} images of a test set of {n_test}: it takes 1 to {n_test}")
    if seed is None:
        return torch.arange(size)
    return torch.randperm(n_test, generator=torch.Generator().manual_seed(seed))[:size].sort().values


def binarize_once(x: torch.Tensor, seed: int) -> torch.Tensor:
    """A fixed Bernoulli draw of grey levels ``x`` in [0, 1], reproducible from ``seed``."""
    return torch.bernoulli(x, generator=torch.Generator().manual_seed(seed))


def out_of_distribution(name: str, like: ImageData, images: int, seed: int,
                        data_dir: str | Path | None = None) -> torch.Tensor:
    """``images`` test images of dataset ``name`` for a model of ``like`` (N, C, H, W): the first of a
    permutation seeded with ``seed``, in ``like``'s observation space (8-bit images binarized once with
    seed 0, in that order, for a Bernoulli model). Raises ValueError where no such view exists (another
    image shape; binary images for an 8-bit model)."""
    other = load(name, data_dir)
    if other.image_shape != like.image_shape:
        raise ValueError(f"{name} images are {other.image_shape}, the model's {like.name} images {like.image_shape}")
    if like.likelihood == "logistic" and other.likelihood == "bernoulli":
        raise ValueError(f"{name} is binary; a model of 8-bit {like.name} images has no view of it")
    pick = torch.randperm(len(other.test), generator=torch.Generator().manual_seed(seed))[:images]
    x = other.test[pick]
    return binarize_once(x / 255.0, 0) if like.likelihood == "bernoulli" and other.likelihood == "logistic" else x


def load(name: str, data_dir: str | Path | None = None, download: bool = False) -> ImageData:
    """Load dataset ``name`` (one of :data:`DATASETS`) from ``data_dir`` (default :func:`default_data_dir`)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    return _LOADERS[name](root, download)


# --------------------------------------------------------------------------------------------- #
# MNIST and Fashion-MNIST: torchvision's IDX readers, from the .gz files when only those exist.

IDX_ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}  # IDX type codes -> bytes per item


def idx_problem(path: Path) -> str | None:
    """Why the IDX file ``path`` is not whole (bad magic, or a size other than its header declares), or None."""
    with path.open("rb") as handle:
        head = handle.read(4)
        if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in IDX_ITEM_BYTES or not 1 <= head[3] <= 4:
            return "not an IDX file (bad magic number)"
        dims = handle.read(4 * head[3])
    if len(dims) < 4 * head[3]:
        return "truncated header"
    expected = 4 + len(dims) + math.prod(int.from_bytes(dims[i:i + 4], "big") for i in range(0, len(dims), 4)) \
        * IDX_ITEM_BYTES[head[2]]
    size = path.stat().st_size
    return None if size == expected else f"{size} bytes where its header declares {expected} (truncated or damaged)"


def _read_idx(cls, root: Path, train: bool, download: bool = False):
    """torchvision's reader, its failures (a failed download, unreadable files) as :class:`DataError`."""
    try:
        return cls(str(root), train=train, download=download)
    except Exception as err:  # torchvision raises RuntimeError, URLError, ValueError, ... on these paths
        what = "download failed" if download else "files could not be read"
        raise DataError(f"{cls.__name__}: {what} in {root / cls.__name__ / 'raw'} ({type(err).__name__}: {err})") from None


def _idx_dataset(cls, root: Path, download: bool, train: bool):
    """torchvision ``cls`` (MNIST or FashionMNIST), decompressing md5-checked ``.gz`` files into the cache.
    Every decompressed file is checked against its IDX header before it is read: a damaged one in the data
    folder is refused (:class:`DataError` naming it), a damaged cached copy is decompressed again."""
    raw = root / cls.__name__ / "raw"
    unpacked = [Path(fname).with_suffix("").name for fname, _ in cls.resources]
    if all((raw / f).exists() for f in unpacked):
        bad = [f"{raw / f}: {problem}" for f in unpacked if (problem := idx_problem(raw / f))]
        if bad:
            raise DataError(f"{cls.__name__}: damaged file(s) {'; '.join(bad)}. Replace them with the originals "
                            "(or delete them to use the .gz files beside them).")
        return _read_idx(cls, root, train)
    gz = [(raw / fname, md5) for fname, md5 in cls.resources]
    if all(path.exists() for path, _ in gz):
        bad = [path.name for path, md5 in gz if not check_integrity(str(path), md5)]
        if bad:
            raise DataError(f"{cls.__name__}: corrupt file(s) {', '.join(bad)} in {raw} "
                            "(md5 differs from torchvision's); replace them with the originals.")
        target = cache_dir() / "data" / cls.__name__ / "raw"
        target.mkdir(parents=True, exist_ok=True)
        for path, _ in gz:
            copy = target / path.with_suffix("").name
            if copy.exists() and idx_problem(copy):
                copy.unlink()  # a damaged cached copy (an interrupted or foreign write): decompress it again
            _gunzip_once(path, copy)
            if problem := idx_problem(copy):
                raise DataError(f"{cls.__name__}: {path} decompresses to a damaged file ({problem})")
        return _read_idx(cls, target.parent.parent, train)
    if download:
        return _read_idx(cls, root, train, download=True)
    raise DataError(_missing(cls.__name__, raw, [f for f, _ in cls.resources] + ["(or the same names without .gz)"]))


def _gunzip_once(source: Path, target: Path) -> None:
    """Decompress ``source`` to ``target`` unless it exists. The file is written under a name of this
    process's own and renamed when complete, so jobs started together never read a partial copy."""
    if target.exists():
        return

    def unpack(partial: Path) -> None:
        with gzip.open(source, "rb") as packed, partial.open("wb") as unpacked:
            shutil.copyfileobj(packed, unpacked)

    atomic_write(target, unpack)


def _extract_once(archive: Path, target: Path) -> None:
    """Extract ``archive``, whose single top folder is named like ``target``, to ``target`` unless it
    is a folder already. Extracted under a name of this process's own and renamed when complete, so an
    interrupted extraction or jobs started together never leave a partial folder under the final name."""
    if target.is_dir():
        return
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        extract_archive(str(archive), str(partial))
        try:
            os.replace(partial / target.name, target)
        except OSError:
            if not target.is_dir():  # not a concurrent job that finished first: a real failure
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _missing(what: str, folder: Path, files: list[str], how: str = "") -> str:
    how = how or "pass --download (or download=True) to fetch it with torchvision"
    return (f"{what} not found. Expected {', '.join(files)} in {folder}. "
            f"Point --data-dir (or GPVAE_DATA_DIR) at the folder that holds it, or {how}.")


def _split_train(x: torch.Tensor, n_valid: int) -> tuple[torch.Tensor, torch.Tensor]:
    return x[:-n_valid], x[-n_valid:]


def _binary_data(name, train_grey, test_grey, n_valid, description, permute=False) -> ImageData:
    if permute:
        train_grey = train_grey[torch.randperm(len(train_grey), generator=torch.Generator().manual_seed(SPLIT_SEED))]
    train, valid = _split_train(train_grey, n_valid)
    return ImageData(name, train, binarize_once(valid, VALID_BINARIZATION_SEED),
                     binarize_once(test_grey, TEST_BINARIZATION_SEED), "bernoulli", description)


def _load_mnist(root: Path, download: bool) -> ImageData:
    sets = [_idx_dataset(torchvision.datasets.MNIST, root, download, train) for train in (True, False)]
    grey = [s.data.unsqueeze(1).float() / 255.0 for s in sets]
    return _binary_data("mnist", grey[0], grey[1], 10_000,
                        "MNIST, dynamic binarization for training; validation (last 10,000 training images) "
                        f"and test binarized once (seeds {VALID_BINARIZATION_SEED}, {TEST_BINARIZATION_SEED})")


def _load_fashion_mnist(root: Path, download: bool) -> ImageData:
    sets = [_idx_dataset(torchvision.datasets.FashionMNIST, root, download, train) for train in (True, False)]
    pixels = [s.data.unsqueeze(1).float() for s in sets]
    train, valid = _split_train(pixels[0], 10_000)
    return ImageData("fashion_mnist", train, valid, pixels[1], "logistic",
                     "Fashion-MNIST, 8-bit grey levels (discretized logistic likelihood); "
                     "validation = last 10,000 training images")


# --------------------------------------------------------------------------------------------- #
# Omniglot: torchvision's zips, or the .npz copy of the original 105x105 images.

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _omniglot_ink(root: Path, background: bool, download: bool) -> torch.Tensor:
    """Original Omniglot images as float ink maps (N, 1, 105, 105), ink = 1."""
    stem = "images_background" if background else "images_evaluation"
    npz = root / "omniglot-npz" / f"{stem}.npz"
    tv_root = root / "omniglot-py"
    if npz.exists():
        if _sha256(npz) != OMNIGLOT_NPZ_SHA256[npz.name]:
            raise DataError(f"Omniglot: corrupt file {npz} (sha256 differs from {OMNIGLOT_NPZ_SHA256[npz.name]}).")
        images = np.load(npz)["images"]  # bool (chars, drawers, 105, 105), True = background
        return torch.from_numpy(~images.reshape(-1, 1, 105, 105)).float()
    if (tv_root / f"{stem}.zip").exists() or download:
        root_for_tv = root
        if not download and not (tv_root / stem).is_dir():  # zip, not yet extracted: extract into cache
            root_for_tv = cache_dir() / "data"
            (root_for_tv / "omniglot-py").mkdir(parents=True, exist_ok=True)
            link = root_for_tv / "omniglot-py" / f"{stem}.zip"
            if not (link.parent / stem).is_dir():  # verified before it is extracted under its final name
                zip_path = tv_root / f"{stem}.zip"
                if not check_integrity(str(zip_path), torchvision.datasets.Omniglot.zips_md5[stem]):
                    raise DataError(f"Omniglot: corrupt file {zip_path} (md5 differs from torchvision's); "
                                    "replace it with the original.")
            if not link.exists():  # torchvision checks the zip's md5 beside the extracted folder
                link.symlink_to((tv_root / f"{stem}.zip").resolve())
            _extract_once(link, link.parent / stem)
        try:
            ds = torchvision.datasets.Omniglot(str(root_for_tv), background=background, download=download)
        except Exception as err:  # RuntimeError for missing/corrupt files, URLError and others for a download
            raise DataError(f"Omniglot: {type(err).__name__}: {err} (looked in {tv_root})") from None
        return torch.stack([1.0 - TF.pil_to_tensor(ds[i][0]).float().clamp(max=1) for i in range(len(ds))])
    raise DataError(_missing("Omniglot", root, [f"omniglot-npz/{stem}.npz", f"omniglot-py/{stem}.zip"]))


def resize_omniglot(ink: torch.Tensor, side: int = OMNIGLOT_SIDE, chunk: int = 2048) -> torch.Tensor:
    """Antialiased bilinear resize of ink maps (N, 1, 105, 105) to grey levels (N, 1, side, side) in [0, 1]."""
    return torch.cat([TF.resize(part, [side, side], antialias=True).clamp(0, 1) for part in ink.split(chunk)])


def _load_omniglot(root: Path, download: bool) -> ImageData:
    grey = [resize_omniglot(_omniglot_ink(root, background, download)) for background in (True, False)]
    n_valid = len(grey[0]) // 10
    return _binary_data("omniglot", grey[0], grey[1], n_valid,
                        "Omniglot-28 (resized): background set resized 105->28 (antialiased), seeded 10% "
                        f"validation ({n_valid} images), evaluation set for test; dynamic binarization",
                        permute=True)


# --------------------------------------------------------------------------------------------- #
# Colour datasets: CIFAR-10, SVHN, CelebA (discretized logistic likelihood).

def _torchvision_colour(make, what: str, folder: Path, files: list[str], download: bool):
    """Call a torchvision constructor, turning its missing/corrupt errors into :class:`DataError`."""
    try:
        return make(download)
    except RuntimeError as err:
        present = all((folder / f).exists() for f in files)
        if present:
            raise DataError(f"{what}: files in {folder} failed torchvision's md5 check ({err}); "
                            "replace them with the originals.") from None
        raise DataError(_missing(what, folder, files)) from None


def _load_cifar10(root: Path, download: bool) -> ImageData:
    cls = torchvision.datasets.CIFAR10
    folder = root / cls.base_folder
    files = [f for f, _ in cls.train_list + cls.test_list]
    sets = [_torchvision_colour(lambda d, t=train: cls(str(root), train=t, download=d), "CIFAR-10", folder,
                                files, download) for train in (True, False)]
    pixels = [torch.from_numpy(s.data).permute(0, 3, 1, 2).float() for s in sets]
    train, valid = _split_train(pixels[0], 5_000)
    return ImageData("cifar10", train, valid, pixels[1], "logistic",
                     "CIFAR-10, 8-bit colour; validation = last 5,000 training images")


def _load_svhn(root: Path, download: bool) -> ImageData:
    cls = torchvision.datasets.SVHN
    sets = [_torchvision_colour(lambda d, s=split: cls(str(root), split=s, download=d), "SVHN", root,
                                [cls.split_list[s][1] for s in ("train", "test")], download)
            for split in ("train", "test")]
    pixels = [torch.from_numpy(s.data).float() for s in sets]
    train, valid = _split_train(pixels[0], len(pixels[0]) // 10)
    return ImageData("svhn", train, valid, pixels[1], "logistic",
                     "SVHN (train split only, no 'extra'), 8-bit colour; validation = last 10% of train")


def _celeba_split(root: Path, split: str, download: bool) -> torch.Tensor:
    cls = torchvision.datasets.CelebA
    crop = torchvision.transforms.Compose([
        torchvision.transforms.CenterCrop(CELEBA_CROP),
        torchvision.transforms.Resize(CELEBA_SIDE, antialias=True),
        torchvision.transforms.PILToTensor(),
    ])
    ds = _torchvision_colour(lambda d: cls(str(root), split=split, target_type=[], transform=crop, download=d),
                             "CelebA", root / cls.base_folder,
                             ["img_align_celeba/"] + [f for _, _, f in cls.file_list if not f.endswith(".zip")],
                             download)
    return torch.stack([ds[i][0] for i in range(len(ds))]).float()


def _load_celeba(root: Path, download: bool) -> ImageData:
    train, valid, test = (_celeba_split(root, s, download) for s in ("train", "valid", "test"))
    return ImageData("celeba", train, valid, test, "logistic",
                     f"CelebA aligned, centre crop {CELEBA_CROP} resized to {CELEBA_SIDE}x{CELEBA_SIDE}, "
                     "official train/valid/test partition, 8-bit colour")


_LOADERS = {
    "mnist": _load_mnist,
    "fashion_mnist": _load_fashion_mnist,
    "omniglot": _load_omniglot,
    "cifar10": _load_cifar10,
    "svhn": _load_svhn,
    "celeba": _load_celeba,
}
