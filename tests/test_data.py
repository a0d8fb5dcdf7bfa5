import torch

from tests.conftest import make_cfg
from vgbench.data import epoch_batches, load_data, synthetic_splits

CPU = torch.device("cpu")


def test_epoch_batches_cover_every_example_once():
    batches = list(epoch_batches(1000, 64, seed=3, epoch=0, device=CPU))
    assert [len(b) for b in batches] == [64] * 15 + [40]
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(1000))


def test_epoch_batches_depend_only_on_seed_and_epoch():
    first = torch.cat(list(epoch_batches(100, 10, seed=1, epoch=2, device=CPU)))
    again = torch.cat(list(epoch_batches(100, 10, seed=1, epoch=2, device=CPU)))
    next_epoch = torch.cat(list(epoch_batches(100, 10, seed=1, epoch=3, device=CPU)))
    other_seed = torch.cat(list(epoch_batches(100, 10, seed=2, epoch=2, device=CPU)))
    assert torch.equal(first, again)
    assert not torch.equal(first, next_epoch) and not torch.equal(first, other_seed)


def test_synthetic_is_deterministic_and_shaped_like_mnist():
    cfg = make_cfg("data=synthetic").data
    (train_a, test_a), (train_b, _) = synthetic_splits(cfg), synthetic_splits(cfg)
    assert train_a.x.shape == (1024, 784) and test_a.x.shape == (256, 784)
    assert torch.equal(train_a.x, train_b.x) and torch.equal(train_a.y, train_b.y)
    assert torch.bincount(train_a.y).tolist() == [103] * 4 + [102] * 6  # balanced classes


def test_limit_hold_out_and_normalise():
    cfg = make_cfg("data=synthetic", "data.limit_train=600", "data.limit_test=100", "data.val_size=100").data
    data = load_data(cfg, seed=0, device=CPU)
    assert (len(data.train), len(data.val), len(data.test)) == (500, 100, 100)
    assert data.held_out[0] == "val"
    assert abs(data.train.x.mean().item()) < 1e-6 and abs(data.train.x.std().item() - 1) < 1e-5
    # the held-out examples are the ones missing from train: together they are the first 600
    raw_train, _ = synthetic_splits(cfg)
    assert data.train.x.shape[1] == data.num_features == 784 and data.num_classes == 10
    together = torch.cat([data.train.y, data.val.y]).sort().values
    assert torch.equal(together, raw_train.y[:600].sort().values)


def test_same_seed_same_split_other_seed_other_split():
    cfg = make_cfg("data=synthetic", "data.val_size=100").data
    a, b, c = (load_data(cfg, seed=s, device=CPU) for s in (0, 0, 1))
    assert torch.equal(a.val.x, b.val.x)
    assert not torch.equal(a.val.x, c.val.x)


def test_without_val_the_held_out_split_is_test():
    data = load_data(make_cfg("data=synthetic").data, seed=0, device=CPU)
    assert data.val is None and data.held_out == ("test", data.test)
