"""The stacked optimizers against torch.optim, step by step, and per-run hyperparameters in a stack."""

import pytest
import torch

from tests.conftest import make_cfg, peak_bytes
from vgbench.errors import ConfigError
from vgbench.optim import OPTIMIZERS, build_optimizer

SHAPES = [(1, 6, 5), (1, 6), (1, 3, 6), (1, 3)]  # two layers' weights and biases, as a stack of one


def reference_and_ours(name, overrides, seed=0):
    cfg = make_cfg(f"optimizer={name}", *overrides).optimizer
    generator = torch.Generator().manual_seed(seed)
    start = [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in SHAPES]
    ours = [torch.nn.Parameter(t.clone()) for t in start]
    theirs = [torch.nn.Parameter(t.clone()) for t in start]
    return cfg, ours, build_optimizer([cfg], ours), theirs


def torch_optimizer(cfg, params):
    if cfg.name in ("sgd", "momentum"):
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    return torch.optim.RMSprop(
        params, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def loss_of(params, step):
    # a different, non-quadratic loss each step, so momentum and second moments matter
    return sum(((p * (step + 1)).sin() * p).sum() + (p**2).sum() * 0.1 for p in params)


CASES = [
    ("sgd", ["optimizer.lr=0.05"]),
    ("sgd", ["optimizer.lr=0.05", "optimizer.weight_decay=0.1"]),
    ("momentum", ["optimizer.lr=0.03", "optimizer.momentum=0.8"]),
    ("momentum", ["optimizer.lr=0.03", "optimizer.nesterov=true", "optimizer.weight_decay=0.01"]),
    ("adam", ["optimizer.lr=0.01", "optimizer.betas=[0.8,0.99]", "optimizer.eps=1e-6"]),
    ("adam", ["optimizer.lr=0.01", "optimizer.weight_decay=0.05"]),
    ("rmsprop", ["optimizer.lr=0.01", "optimizer.alpha=0.9", "optimizer.eps=1e-5"]),
    ("rmsprop", ["optimizer.lr=0.01", "optimizer.momentum=0.5", "optimizer.weight_decay=0.02"]),
]


@pytest.mark.parametrize(("name", "overrides"), CASES, ids=[" ".join([n, *o]) for n, o in CASES])
def test_each_optimizer_equals_torch_optim(name, overrides):
    cfg, ours, optimizer, theirs = reference_and_ours(name, overrides)
    reference = torch_optimizer(cfg, theirs)
    for step in range(6):
        for params, opt in ((ours, optimizer), (theirs, reference)):
            opt.zero_grad()
            loss_of(params, step).backward()
        before = [p.detach().clone() for p in ours]
        keep = step % 2 == 1  # the fused step and the one that keeps its updates (the monitor's) alternate
        updates = optimizer.step(keep_updates=keep)
        reference.step()
        for mine, expected in zip(ours, theirs, strict=True):
            torch.testing.assert_close(mine, expected, rtol=1e-12, atol=1e-14)
        if not keep:
            assert updates is None
            continue
        for update, now, then in zip(updates, ours, before, strict=True):  # step() returns what it added
            torch.testing.assert_close(update, now.detach() - then, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize(("name", "overrides"), CASES, ids=[" ".join([n, *o]) for n, o in CASES])
def test_floats_per_parameter_bounds_what_a_step_holds(name, overrides):
    """vgbench.memory plans stacks with it: weight, gradient, state and the step's temporaries, at most."""
    cfg = make_cfg(f"optimizer={name}", *overrides).optimizer
    big = [torch.nn.Parameter(torch.randn(4, 300, 200, dtype=torch.float64))]  # allocations dwarf the rest
    optimizer = build_optimizer([cfg], big)
    for step in range(2):  # the state exists after the first
        optimizer.zero_grad()
        loss_of(big, step).backward()
        held = 2 + sum(len(state) for state in optimizer.state.values())  # weight, gradient, state buffers
        during = peak_bytes(lambda: optimizer.step(keep_updates=True)) / 8 / big[0].numel()
    assert held + during <= OPTIMIZERS[cfg.name].floats_per_parameter(cfg) <= held + during + 1


@pytest.mark.parametrize("keep_updates", [False, True])
@pytest.mark.parametrize("name", ["momentum", "adam", "rmsprop"])
def test_each_run_of_a_stack_keeps_its_own_hyperparameters(name, keep_updates):
    """Three runs with different lr, momentum/betas/alpha and weight decay, stacked: each equals the same
    run stepped alone."""
    settings = [
        [
            "optimizer.lr=0.01",
            "optimizer.weight_decay=0.0",
            "optimizer.momentum=0.5",
            "optimizer.betas=[0.9,0.999]",
            "optimizer.alpha=0.9",
        ],
        [
            "optimizer.lr=0.05",
            "optimizer.weight_decay=0.1",
            "optimizer.momentum=0.0",
            "optimizer.betas=[0.5,0.9]",
            "optimizer.alpha=0.99",
        ],
        [
            "optimizer.lr=0.002",
            "optimizer.weight_decay=0.01",
            "optimizer.momentum=0.9",
            "optimizer.betas=[0.95,0.95]",
            "optimizer.alpha=0.5",
        ],
    ]
    if name != "rmsprop":  # Adam ignores momentum; SGD's nesterov is a stack key
        settings = [[o for o in s if "alpha" not in o] for s in settings]
    cfgs = [make_cfg(f"optimizer={name}", *s).optimizer for s in settings]
    generator = torch.Generator().manual_seed(3)
    start = torch.randn(3, 4, 5, generator=generator, dtype=torch.float64)
    stacked = torch.nn.Parameter(start.clone())
    alone = [torch.nn.Parameter(start[k : k + 1].clone()) for k in range(3)]
    stacked_opt = build_optimizer(cfgs, [stacked])
    alone_opts = [build_optimizer([cfg], [p]) for cfg, p in zip(cfgs, alone, strict=True)]
    for step in range(5):
        stacked_opt.zero_grad()
        loss_of([stacked], step).backward()
        before = stacked.detach().clone()
        kept = stacked_opt.step(keep_updates=keep_updates)
        if keep_updates:  # each run's update norm from the step's factors: |lr_k| * ||direction_k||
            added = (stacked.detach() - before).flatten(1).norm(dim=1)
            from_factors = kept.directions[0].flatten(1).norm(dim=1) * kept.run_scales(before)
            torch.testing.assert_close(from_factors, added, rtol=1e-9, atol=1e-15)
        for p, opt in zip(alone, alone_opts, strict=True):
            opt.zero_grad()
            loss_of([p], step).backward()
            opt.step()
    torch.testing.assert_close(stacked.detach(), torch.cat([p.detach() for p in alone]), rtol=1e-12, atol=1e-14)
    assert not torch.allclose(alone[0], alone[1])  # the settings really differ


def test_a_run_that_leaves_takes_its_state_and_hyperparameters_along():
    """Three runs with their own momentum and lr; run 1 leaves after two steps. The other two go on exactly
    as they would have."""
    cfgs = [
        make_cfg("optimizer=momentum", f"optimizer.lr={lr}", f"optimizer.momentum={m}").optimizer
        for lr, m in ((0.1, 0.9), (0.2, 0.5), (0.05, 0.0))
    ]
    start = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    stacked, reference = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    optimizer, whole = build_optimizer(cfgs, [stacked]), build_optimizer(cfgs, [reference])
    for step in range(5):
        if step == 2:
            rows = torch.tensor([0, 2])
            stacked = torch.nn.Parameter(stacked.detach().index_select(0, rows))  # what the model's keep_runs does
            optimizer.keep_runs(rows, [stacked])
        for p, opt in ((stacked, optimizer), (reference, whole)):
            p.grad = (p.detach() * (step + 1)).sin()
            opt.step()
    torch.testing.assert_close(stacked.detach(), reference.detach()[[0, 2]], rtol=1e-14, atol=0)
    assert optimizer.lr.values == [0.1, 0.05] and optimizer.momentum.values == [0.9, 0.0]


def test_run_state_round_trip():
    cfgs = [make_cfg("optimizer=adam").optimizer] * 3
    p = torch.nn.Parameter(torch.randn(3, 4))
    optimizer = build_optimizer(cfgs, [p])
    for _ in range(2):
        p.grad = torch.randn(3, 4)
        optimizer.step(keep_updates=True)
    saved = optimizer.run_states()[2]
    assert saved["steps"] == 2 and saved["buffers"]["exp_avg"][0].shape == (1, 4)
    fresh = build_optimizer(cfgs[:1], [torch.nn.Parameter(p[2:].detach().clone())])
    fresh.load_run_state(0, saved)
    torch.testing.assert_close(fresh.state[fresh.params[0]]["exp_avg_sq"], optimizer.state[p]["exp_avg_sq"][2:])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.momentum=1.0", "optimizer.momentum=1.0 is not valid; it must be in [0, 1)"),
        ("optimizer.betas=[0.9]", "optimizer.betas=[0.9] is not valid; give two values"),
        ("optimizer.eps=0", "optimizer.eps=0.0 is not valid; it must be > 0.0"),
    ],
)
def test_bad_hyperparameters_are_one_line(override, message):
    cfg = make_cfg("optimizer=rmsprop" if "momentum" in override else "optimizer=adam", override).optimizer
    with pytest.raises(ConfigError) as error:
        OPTIMIZERS[cfg.name].check(cfg)
    assert str(error.value).startswith(message)


def test_grad_scaler_unscales_and_steps_our_optimizer():
    """torch.amp.GradScaler (fp16's loss scaling) drives the stacked optimizer as it drives torch.optim's:
    it unscales the gradients before the step, and skips a step whose gradients overflowed."""
    cfg = make_cfg("optimizer=momentum").optimizer
    start = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    plain, scaled = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    plain_opt, scaled_opt = build_optimizer([cfg] * 2, [plain]), build_optimizer([cfg] * 2, [scaled])
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    for step in range(3):
        plain_opt.zero_grad()
        loss_of([plain], step).backward()
        plain_opt.step()
        scaled_opt.zero_grad()
        scaler.scale(loss_of([scaled], step)).backward()
        updates = scaler.step(scaled_opt, keep_updates=True)
        scaler.update()
        assert updates is not None and len(updates) == 1
    torch.testing.assert_close(scaled.detach(), plain.detach(), rtol=1e-5, atol=1e-6)
    before = scaled.detach().clone()
    scaled_opt.zero_grad()
    scaler.scale(loss_of([scaled], 0) * float("inf")).backward()
    assert scaler.step(scaled_opt, keep_updates=True) is None  # an overflow: the step is skipped
    scaler.update()
    assert torch.equal(scaled.detach(), before) and scaler.get_scale() == 2.0**15
