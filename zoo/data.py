"""Datasets held as uint8 ``(N, C, H, W)`` tensors with their normalisation, small enough to live on the device.

Registry: ``cifar10`` (a ``cifar-10-batches-py`` folder, the offline JPEG npz, or a download), ``cifar100`` (a
``cifar-100-python`` folder or a download), ``fashion_mnist``
(standard idx files) and ``digits`` (scikit-learn). Optional area downsampling and class-balanced subsets make
CPU-sized zoos from the same real data.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from symzoo.errors import ConfigError, SymzooError
from symzoo.zoo.location import default_data_dir

CIFAR10_MEAN = (125.307, 122.961, 113.8575)
CIFAR10_STD = (51.5865, 50.847, 51.255)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # published with the archive
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"  # published with the archive
DATASETS = ("cifar10", "cifar100", "fashion_mnist", "digits")
SCALINGS = ("standardize", "symmetric")  # how images become inputs: per-channel z-scores, or x / 127.5 - 1
REPO_ROOT = Path(__file__).resolve().parent.parent


class DataNotFoundError(SymzooError, FileNotFoundError):
    """A data set is not where we looked; the message says where that was and how to provide it."""


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor  # uint8 (N, C, H, W)
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: tuple[float, ...]  # per channel, 0-255 scale
    std: tuple[float, ...]
    num_classes: int

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """Content hash, recorded in the manifest so a zoo names exactly the data it was trained on."""
        h = hashlib.sha256()
        for t in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 -> float, zero-mean per channel, so "fill with the mean colour" is "fill with 0"."""
        dtype = torch.get_default_dtype()
        mean = torch.tensor(self.mean, device=x.device, dtype=dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=dtype).view(1, -1, 1, 1)
        return (x.to(dtype) - mean) / std

    def head(self, n_train: int, n_test: int) -> Dataset:
        """The first images of each split (rows are mixed, so every class appears), same normalisation: for
        benchmarks and quick checks."""
        return Dataset(
            self.name,
            self.x_train[:n_train],
            self.y_train[:n_train],
            self.x_test[:n_test],
            self.y_test[:n_test],
            self.mean,
            self.std,
            self.num_classes,
        )

    def to(self, device: torch.device | str) -> Dataset:
        move = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")}
        return Dataset(self.name, **move, mean=self.mean, std=self.std, num_classes=self.num_classes)


def shared_data_candidates(filename: str) -> list[Path]:
    """Where offline copies of the data sets may live: ``$SYMZOO_SHARED_DATA``, then a ``shared/data`` folder beside
    the checkout (how the development machines hold them; a user's machine has neither unless it sets the first)."""
    found = []
    if os.environ.get("SYMZOO_SHARED_DATA"):
        found.append(Path(os.environ["SYMZOO_SHARED_DATA"]) / filename)
    for base in (Path.cwd(), REPO_ROOT):
        found.append(base.parent / "shared" / "data" / filename)
        found.append(base / "shared" / "data" / filename)
    return found


# --- CIFAR-10 ---------------------------------------------------------------------------------------------------


# What a CIFAR-10 batch pickle may name: numpy's array reconstruction (and bytes) and nothing else. Zoos are
# shared and name their data folder; a pickle that names any other callable (os.system, ...) is refused, not run.
CIFAR_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 spell a bytes object
}


class CifarUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR-10's batch files that builds dicts, lists, bytes, numbers and numpy arrays only."""

    def find_class(self, module: str, name: str):
        if (module, name) in CIFAR_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 batch never does")


def read_cifar_batch(path: Path, labels: bytes = b"labels", name: str = "CIFAR-10") -> dict:
    """One ``cifar-10-batches-py`` file (or ``cifar-100-python``'s, whose labels are ``fine_labels``), read without
    running anything it names; one line if it is not one."""
    try:
        with open(path, "rb") as f:
            batch = CifarUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise SymzooError(f"{path} is not a {name} batch file ({e}); replace it with {name}'s own") from None
    if not isinstance(batch, dict) or b"data" not in batch or labels not in batch:
        raise SymzooError(f"{path} is not a {name} batch file (no data and labels); replace it with {name}'s own")
    return batch


def _read_cifar_batches(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    def read(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for n in names:
            d = read_cifar_batch(folder / n)
            xs.append(np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(d[b"labels"], np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    xtr, ytr = read([f"data_batch_{i}" for i in range(1, 6)])
    xte, yte = read(["test_batch"])
    return xtr, ytr, xte, yte


def _decode_jpeg_npz(path: Path, cache_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode the JPEG copy once (about 20 s) and keep the pixels in a cache keyed by the source's hash."""
    with open(path, "rb") as f:
        key = hashlib.sha256(f.read(1 << 20)).hexdigest()[:12] + f"-{path.stat().st_size}"
    cache = cache_dir / f"cifar10_jpeg_decoded_{key}.npz"
    if cache.exists():
        d = np.load(cache)
        return d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    from PIL import Image

    src = np.load(path)
    blob, offsets, y, split = src["blob"], src["offsets"], src["y"].astype(np.int64), src["split"]
    images = np.empty((len(y), 32, 32, 3), np.uint8)
    for i in range(len(y)):
        raw = blob[offsets[i] : offsets[i + 1]].tobytes()
        images[i] = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
    images = images.transpose(0, 3, 1, 2)
    train, test = split == 0, split == 1
    out = images[train], y[train], images[test], y[test]
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, x_train=out[0], y_train=out[1], x_test=out[2], y_test=out[3])
    os.replace(tmp, cache)
    return out


def download_verified(url: str, dest: Path, md5: str, show_progress: bool = True) -> Path:
    """Stream ``url`` to a hidden temporary with a progress bar, check its md5, then rename it to ``dest``.

    ``dest`` therefore only ever exists complete and verified: an interrupted download leaves nothing that a
    later run would try to open, and a corrupt one is a one-line error naming the file.
    """
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.part-{os.getpid()}"
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, desc=dest.name, disable=not show_progress) as bar:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if size is not None and f.tell() != size:
                raise OSError(f"the connection closed after {f.tell()} of {size} bytes")
        if digest.hexdigest() != md5:
            raise DataNotFoundError(
                f"download of {dest.name} from {url} has md5 {digest.hexdigest()}, not the published {md5}; "
                f"nothing was kept: rerun, or put the unpacked data under {dest.parent} by hand"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _download_cifar10(root: Path) -> Path:
    archive = root / "cifar-10-python.tar.gz"
    if not archive.exists():  # an archive under this name was verified when it was written
        download_verified(CIFAR10_URL, archive, CIFAR10_MD5)
    with tarfile.open(archive) as tar:
        try:
            tar.extractall(root, filter="data")  # refuses unsafe paths (Python >= 3.10.12)
        except TypeError:
            tar.extractall(root)  # older Pythons; the archive is CIFAR-10's own
    return root / "cifar-10-batches-py"


def load_cifar10(root: Path, download: bool = False) -> tuple[np.ndarray, ...]:
    batches = root / "cifar-10-batches-py"
    if (batches / "test_batch").exists():
        return _read_cifar_batches(batches)
    npz_candidates = [Path(os.environ["SYMZOO_CIFAR10_NPZ"])] if os.environ.get("SYMZOO_CIFAR10_NPZ") else []
    npz_candidates += [root / "cifar10_jpeg.npz", *shared_data_candidates("cifar10_jpeg.npz")]
    for npz in npz_candidates:
        if npz.exists():
            # The copy is sorted by split and class; a fixed shuffle stands in for CIFAR-10's own mixed order,
            # so that any prefix (a benchmark's, a quick test's) holds every class.
            xtr, ytr, xte, yte = _decode_jpeg_npz(npz, root)
            ptr, pte = np.random.default_rng(0).permutation(len(ytr)), np.random.default_rng(1).permutation(len(yte))
            return xtr[ptr], ytr[ptr], xte[pte], yte[pte]
    if download:
        try:
            return _read_cifar_batches(_download_cifar10(root))
        except OSError as e:
            raise DataNotFoundError(
                f"cifar10: download from {CIFAR10_URL} failed ({e}); put cifar-10-batches-py under {root} instead"
            ) from e
    raise DataNotFoundError(
        f"cifar10 not found (looked for {batches} and cifar10_jpeg.npz in {root}, $SYMZOO_SHARED_DATA and a "
        "shared/data folder beside the checkout); "
        f"unpack cifar-10-python.tar.gz into {root}, set SYMZOO_CIFAR10_NPZ, or set download: true"
    )


def load_cifar100(root: Path, download: bool = False) -> tuple[np.ndarray, ...]:
    """CIFAR-100 (the 100 fine labels) from a standard ``cifar-100-python`` folder under ``root``, or downloaded
    and checked against the published md5 when the config says ``download: true``."""
    folder = root / "cifar-100-python"
    if not (folder / "test").exists() and download:
        archive = root / "cifar-100-python.tar.gz"
        try:
            if not archive.exists():
                download_verified(CIFAR100_URL, archive, CIFAR100_MD5)
        except OSError as e:
            raise DataNotFoundError(
                f"cifar100: download from {CIFAR100_URL} failed ({e}); put cifar-100-python under {root} instead"
            ) from e
        with tarfile.open(archive) as tar:
            try:
                tar.extractall(root, filter="data")
            except TypeError:
                tar.extractall(root)
    if not (folder / "test").exists():
        raise DataNotFoundError(
            f"cifar100 not found (looked for {folder}/train and test); unpack cifar-100-python.tar.gz into {root} "
            "(or set data.root), or set download: true"
        )

    def read(name: str) -> tuple[np.ndarray, np.ndarray]:
        d = read_cifar_batch(folder / name, b"fine_labels", "CIFAR-100")
        return np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32), np.asarray(d[b"fine_labels"], np.int64)

    return (*read("train"), *read("test"))


# --- Fashion-MNIST ----------------------------------------------------------------------------------------------


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def load_fashion_mnist(root: Path) -> tuple[np.ndarray, ...]:
    folders = [root / "fashion-mnist", root, Path("/usr/share/datasets/fashion-mnist")]
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for folder in folders:
        paths = []
        for n in names:
            hit = next((folder / (n + s) for s in ("", ".gz") if (folder / (n + s)).exists()), None)
            paths.append(hit)
        if all(paths):
            xtr, ytr, xte, yte = (_read_idx(p) for p in paths)
            return xtr[:, None], ytr.astype(np.int64), xte[:, None], yte.astype(np.int64)
    raise DataNotFoundError(
        f"fashion_mnist idx files not found in {', '.join(map(str, folders))}; "
        "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or copy the idx files there"
    )


# --- digits -----------------------------------------------------------------------------------------------------


def load_digits() -> tuple[np.ndarray, ...]:
    """scikit-learn's 8x8 digits (values 0-16 scaled to 0-255), split 80/20 class-balanced with a fixed seed."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = np.round(d.images * (255 / 16)).astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(0)
    test = np.zeros(len(y), bool)
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        test[idx[: len(idx) // 5]] = True
    return x[~test], y[~test], x[test], y[test]


# --- shared post-processing ---------------------------------------------------------------------------------------


def balanced_subset(y: np.ndarray, per_class: int, seed: int, field: str = "per_class") -> np.ndarray:
    """``per_class`` seeded picks of every class; more than the smallest class has is a config error on ``field``."""
    counts = np.bincount(y)
    if per_class > (have := int(counts[counts > 0].min())):
        raise ConfigError(
            f"config field '{field}': {per_class} is not allowed; the split has only {have} images of its smallest "
            "class"
        )
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


def downsample(x: np.ndarray, size: int) -> np.ndarray:
    """Area-average to ``size x size``, back to uint8 (what a CPU-sized CIFAR zoo trains on)."""
    if x.shape[-1] == size:
        return x
    out = F.interpolate(torch.from_numpy(x).float(), size=(size, size), mode="area")
    return out.round().clamp(0, 255).to(torch.uint8).numpy()


def load_dataset(
    name: str,
    root: str | Path | None = None,
    size: int | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    subset_seed: int = 0,
    download: bool = False,
) -> Dataset:
    root = Path(root) if root else default_data_dir()
    if name == "cifar10":
        arrays = load_cifar10(root, download)
    elif name == "cifar100":
        arrays = load_cifar100(root, download)
    elif name == "fashion_mnist":
        arrays = load_fashion_mnist(root)
    elif name == "digits":
        arrays = load_digits()
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    xtr, ytr, xte, yte = arrays
    if train_per_class:
        keep = balanced_subset(ytr, train_per_class, subset_seed, "data.train_per_class")
        xtr, ytr = xtr[keep], ytr[keep]
    if test_per_class:
        keep = balanced_subset(yte, test_per_class, subset_seed + 1, "data.test_per_class")
        xte, yte = xte[keep], yte[keep]
    if size:
        xtr, xte = downsample(xtr, size), downsample(xte, size)
    if name == "cifar10" and not size:
        mean, std = CIFAR10_MEAN, CIFAR10_STD
    else:
        flat = xtr.astype(np.float64).transpose(1, 0, 2, 3).reshape(xtr.shape[1], -1)
        mean, std = tuple(flat.mean(1).tolist()), tuple(flat.std(1).tolist())
    t = torch.from_numpy
    return Dataset(
        name,
        t(np.ascontiguousarray(xtr)),
        t(ytr),
        t(np.ascontiguousarray(xte)),
        t(yte),
        mean,
        std,
        int(max(ytr.max(), yte.max()) + 1),
    )


def load_images(data_cfg: dict) -> Dataset:
    """The image data set a zoo config's ``data`` section names (``zoo.sources.load_configured`` also reads
    graphs)."""
    data = load_dataset(
        data_cfg["name"],
        root=data_cfg["root"],
        size=data_cfg["size"],
        train_per_class=data_cfg["train_per_class"],
        test_per_class=data_cfg["test_per_class"],
        subset_seed=data_cfg["subset_seed"],
        download=data_cfg["download"],
    )
    if data_cfg.get("grayscale", False):
        data = grayscale(data)
    if data_cfg.get("scaling", "standardize") == "symmetric":  # zoos from before the field standardised
        channels = data.in_shape[0]
        data = dataclasses.replace(data, mean=(127.5,) * channels, std=(127.5,) * channels)
    return data


LUMA = (299, 587, 114)  # ITU-R BT.601 weights in thousandths, as PIL's convert("L") uses them


def to_luma(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` -> uint8 ``(N, 1, H, W)``: 0.299 R + 0.587 G + 0.114 B, rounded half up; a
    single-channel batch is returned as it is."""
    if x.shape[1] == 1:
        return x
    r, g, b = (x[:, c].to(torch.int32) for c in range(3))
    return ((r * LUMA[0] + g * LUMA[1] + b * LUMA[2] + 500) // 1000).to(torch.uint8).unsqueeze(1)


def grayscale(data: Dataset) -> Dataset:
    """The data set with every image as one luma channel (``data.grayscale: true``; CIFAR-10 INRs fit these), its
    mean and std those of the grayscale training images."""
    x_train, x_test = to_luma(data.x_train), to_luma(data.x_test)
    pixels = x_train.to(torch.float64)
    return dataclasses.replace(
        data, x_train=x_train, x_test=x_test, mean=(float(pixels.mean()),), std=(float(pixels.std()),)
    )
