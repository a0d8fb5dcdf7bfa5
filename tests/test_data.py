import pytest
import torch

import vgbench.data
from tests.conftest import make_cfg
from vgbench.data import Split, epoch_order, epoch_orders, load_data, prepare_splits, synthetic_splits
from vgbench.errors import ConfigError

CPU = torch.device("cpu")


def test_epoch_orders_cover_every_example_once_per_run():
    orders = epoch_orders(1000, seeds=[3, 4], epoch=0, device=CPU)
    assert orders.shape == (2, 1000)
    for run in range(2):
        assert torch.equal(orders[run].sort().values, torch.arange(1000))
    assert not torch.equal(orders[0], orders[1])  # each run its own order


def test_a_runs_order_depends_only_on_its_seed_and_the_epoch():
    alone = epoch_orders(100, seeds=[1], epoch=2, device=CPU)[0]
    in_a_stack = epoch_orders(100, seeds=[5, 1, 7], epoch=2, device=CPU)[1]
    assert torch.equal(alone, in_a_stack) and torch.equal(alone, epoch_order(100, 1, 2))
    assert not torch.equal(alone, epoch_order(100, 1, 3)) and not torch.equal(alone, epoch_order(100, 2, 2))


def test_a_batch_gives_each_run_its_own_examples():
    split = Split(torch.arange(30.0).view(10, 3), torch.arange(10) % 4)
    orders = epoch_orders(len(split), seeds=[0, 1], epoch=0, device=CPU)
    idx = orders[:, 2:6]  # batch 2 of size 4: a strided slice, as train_epoch cuts it
    x, y = split.gather(idx)
    assert x.shape == (2, 4, 3) and y.shape == (2, 4)
    for run in range(2):
        for position, example in enumerate(idx[run].tolist()):
            assert x[run, position].tolist() == [3.0 * example, 3.0 * example + 1, 3.0 * example + 2]
            assert y[run, position].item() == example % 4


def test_synthetic_is_deterministic_and_shaped_like_mnist():
    cfg = make_cfg("data=synthetic").data
    (train_a, test_a), (train_b, _) = synthetic_splits(cfg), synthetic_splits(cfg)
    assert train_a.x.shape == (1024, 784) and test_a.x.shape == (256, 784)
    assert torch.equal(train_a.x, train_b.x) and torch.equal(train_a.y, train_b.y)
    assert torch.bincount(train_a.y).tolist() == [103] * 4 + [102] * 6  # balanced classes


def test_limit_hold_out_and_normalise():
    cfg = make_cfg("data=synthetic", "data.limit_train=600", "data.limit_test=100", "data.val_size=100").data
    data = load_data(cfg, CPU)
    assert (len(data.train), len(data.val), len(data.test)) == (500, 100, 100)
    assert data.held_out[0] == "val"
    assert abs(data.train.x.mean().item()) < 1e-6 and abs(data.train.x.std().item() - 1) < 1e-5
    # the held-out examples are the ones missing from train: together they are the first 600
    raw_train, _ = synthetic_splits(cfg)
    assert data.train.x.shape[1] == data.num_features == 784 and data.num_classes == 10
    together = torch.cat([data.train.y, data.val.y]).sort().values
    assert torch.equal(together, raw_train.y[:600].sort().values)


def test_the_held_out_split_follows_split_seed_not_the_run_seed():
    a, b = (load_data(make_cfg("data=synthetic", "data.val_size=100", f"trainer.seed={s}").data, CPU) for s in (0, 1))
    c = load_data(make_cfg("data=synthetic", "data.val_size=100", "data.split_seed=1").data, CPU)
    assert torch.equal(a.val.x, b.val.x)  # every seed of a sweep validates on the same examples
    assert not torch.equal(a.val.x, c.val.x)


@pytest.mark.parametrize(("limit", "expected"), [(2048, 204), (60000, 5000), (100, 10)])
def test_auto_validation_size_fits_small_subsets(limit, expected):
    cfg = make_cfg(
        "data=synthetic",
        "data.num_train=60000",
        "data.num_features=4",
        f"data.limit_train={limit}",
        "data.val_size=auto",
    ).data
    assert len(load_data(cfg, CPU).val) == expected


def test_an_impossible_validation_size_keeps_its_error():
    cfg = make_cfg("data=synthetic", "data.limit_train=500", "data.val_size=500").data
    with pytest.raises(ConfigError, match="data.val_size=500 leaves no training examples out of 500"):
        load_data(cfg, CPU)


def test_without_val_the_held_out_split_is_test():
    data = load_data(make_cfg("data=synthetic").data, CPU)
    assert data.val is None and data.held_out == ("test", data.test)


def test_a_process_prepares_a_dataset_once_and_again_when_the_config_changes(monkeypatch):
    prepared = []
    synthetic = vgbench.data.DATASETS["synthetic"]
    monkeypatch.setitem(vgbench.data.DATASETS, "synthetic", lambda cfg: prepared.append(cfg) or synthetic(cfg))
    cfg = make_cfg("data=synthetic", "data.limit_train=300", "data.val_size=50").data
    first, second = load_data(cfg, CPU), load_data(cfg, CPU)
    assert len(prepared) == 1 and second.train.x is first.train.x and second.val.y is first.val.y
    other = load_data(make_cfg("data=synthetic", "data.limit_train=200", "data.val_size=50").data, CPU)
    assert len(prepared) == 2 and len(other.train) == 150
    assert len(load_data(cfg, CPU).train) == 250 and len(prepared) == 3  # only the last dataset is kept


def test_training_leaves_the_shared_splits_as_prepared(tmp_path, monkeypatch):
    from tests.conftest import TINY
    from vgbench.train import run

    monkeypatch.chdir(tmp_path)
    cfg = make_cfg(*TINY, "data.val_size=64", "trainer.epochs=1", "model.depth=3")
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)  # keep this process's, the cache's key
    before = load_data(cfg.data, CPU)
    copies = {
        name: (split.x.clone(), split.y.clone())
        for name in ("train", "val", "test")
        for split in [getattr(before, name)]
    }
    run(cfg, tmp_path / "run")
    after = load_data(cfg.data, CPU)
    assert after.train.x is before.train.x  # the run was served the same tensors, and wrote nothing into them
    for name, (x, y) in copies.items():
        assert torch.equal(getattr(after, name).x, x) and torch.equal(getattr(after, name).y, y)
    assert torch.equal(prepare_splits(cfg.data).train.x, after.train.x)
