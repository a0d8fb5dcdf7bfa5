"""The job engine (vgbench.jobs): runs validated one by one, grouped into stacks, set up once per group."""

import pytest

from tests.conftest import TINY, make_cfg
from vgbench.jobs import train_jobs


@pytest.mark.slow
def test_runs_of_other_shapes_or_epochs_make_other_stacks(tmp_path):
    cfgs = [
        make_cfg(*TINY, "model.depth=2"),
        make_cfg(*TINY, "model.depth=3"),
        make_cfg(*TINY, "model.depth=2", "trainer.seed=1"),
        make_cfg(*TINY, "model.depth=0"),
    ]
    results = train_jobs(cfgs, [tmp_path / f"run{k}" for k in range(4)])
    assert [(r.status, r.stack_size) for r in results] == [
        ("completed", 2),
        ("completed", 1),
        ("completed", 2),
        ("failed", 1),
    ]
    assert results[3].error == "model.depth=0 is not valid; it must be >= 1"  # a bad run fails alone


@pytest.mark.slow
def test_each_group_is_set_up_once_for_the_planner_and_its_stacks(tmp_path, monkeypatch):
    """Device, threads and data are prepared once per group of one shape; the memory planner and every
    stack of that group receive that very set-up."""
    import vgbench.memory
    import vgbench.train

    prepared, planned, trained = [], [], []
    real_prepare, real_train = vgbench.train.prepare, vgbench.train.train_stack

    def prepare(shape, placement):
        prepared.append(real_prepare(shape, placement))
        return prepared[-1]

    def stack_sizes(cfgs, share, device, data):
        planned.append(data)
        return [1] * len(cfgs)  # each run a stack of its own: two stacks share one set-up

    def train_stack(folders, cfgs, placement, environment):
        trained.append(environment)
        return real_train(folders, cfgs, placement, environment)

    monkeypatch.setattr(vgbench.train, "prepare", prepare)
    monkeypatch.setattr(vgbench.memory, "stack_sizes", stack_sizes)
    monkeypatch.setattr(vgbench.train, "train_stack", train_stack)
    cfgs = [make_cfg(*TINY, "model.depth=2", f"trainer.seed={seed}") for seed in range(2)]
    cfgs.append(make_cfg(*TINY, "model.depth=3"))
    results = train_jobs(cfgs, [tmp_path / f"run{k}" for k in range(3)])
    assert [r.status for r in results] == ["completed"] * 3
    assert len(prepared) == 2  # two shapes
    assert planned == [prepared[0].data, prepared[1].data]
    assert trained == [prepared[0], prepared[0], prepared[1]]


@pytest.mark.parametrize("bad", ["model.depth=0", "optimizer.lr=-1"])
def test_a_bad_run_fails_alone_and_records_why(tmp_path, bad):
    results = train_jobs([make_cfg(*TINY, bad), make_cfg(*TINY)], [tmp_path / "bad", tmp_path / "good"])
    assert [r.status for r in results] == ["failed", "completed"]
    summary = (tmp_path / "bad" / "summary.json").read_text()
    assert f'"error": "{results[0].error}"' in summary and results[0].error.startswith(bad.split("=")[0])
