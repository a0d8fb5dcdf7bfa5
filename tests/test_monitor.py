"""The monitor against autograd and a hand-written backward pass (float64), per run in a stack, and in
reduced precision (bf16 autocast, an fp16 loss scale of 2^16) on the CPU."""

import math

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import TINY, make_cfg, read_rows
from vgbench.activations import build_activation
from vgbench.losses import cross_entropy
from vgbench.model import MLP, Trace, build_model
from vgbench.monitor import GradientMonitor, by_shape, hidden_stats, std_mean
from vgbench.optim import build_optimizer
from vgbench.precision import Stepped


def float64_model(activation="tanh", depth=4, width=16, in_features=12, seeds=(0,), **model_overrides):
    cfgs = [
        make_cfg(
            f"activation={activation}",
            f"model.depth={depth}",
            f"model.width={width}",
            *[f"model.{k}={v}" for k, v in model_overrides.items()],
            f"trainer.seed={seed}",
        )
        for seed in seeds
    ]
    return build_model(cfgs, in_features, 5).double()


def measured_step(model, x, y, lr=0.1, histograms=False, autocast=None, loss_scale=None):
    """One SGD step with the monitor, as the trainer takes it. x: [K, B, features], y: [K, B]."""
    optimizer = build_optimizer([make_cfg(f"optimizer.lr={lr}").optimizer] * model.stack, list(model.parameters()))
    monitor = GradientMonitor(model, every_n_steps=1)
    trace = Trace()
    with torch.autocast("cpu", dtype=autocast) if autocast else torch.autocast("cpu", enabled=False):
        logits = model(x, trace)
    losses = cross_entropy(logits.float() if autocast else logits, y).mean(dim=1)
    optimizer.zero_grad()
    weight_norm = monitor.weight_norms()
    (losses.sum() * (loss_scale or 1.0)).backward()
    if loss_scale:  # what GradScaler does before the step: unscale the parameters' gradients
        for p in model.parameters():
            p.grad /= loss_scale
    stepped = Stepped(optimizer.step(keep_updates=True), torch.tensor(float(loss_scale)) if loss_scale else None)
    return monitor.measure(0, trace, stepped, weight_norm, {"train/batch_loss": losses.detach()}, histograms), trace


def batch(n=32, features=12, classes=5, stack=1):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, features, generator=generator, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=generator)
    return x.expand(stack, -1, -1), y.expand(stack, -1)


def plain_layers(model, run=0):
    return [(lin.matrix(run).detach().clone(), lin.bias[run].detach().clone()) for lin in model.linears()]


def plain_forward(layers, activation, x):
    h = x
    for index, (w, b) in enumerate(layers):
        h = h @ w.T + b
        if index < len(layers) - 1:
            h = activation(h)
    return h


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "softmax", "gelu"])
def test_gradient_norms_equal_autograd(activation):
    model = float64_model(activation)
    x, y = batch()
    layers = [(w.requires_grad_(), b.requires_grad_()) for w, b in plain_layers(model)]
    params = [p for pair in layers for p in pair]
    grads = torch.autograd.grad(F.cross_entropy(plain_forward(layers, model.activation, x[0]), y[0]), params)
    expected_w = [torch.linalg.norm(g).item() for g in grads[0::2]]
    expected_b = [torch.linalg.norm(g).item() for g in grads[1::2]]
    weight_norms = [torch.linalg.norm(p).item() for p in params[0::2]]

    [measurement], _ = measured_step(model, x, y, lr=0.1)
    assert measurement.layers["grad_norm/weight"] == pytest.approx(expected_w, rel=1e-9)
    assert measurement.layers["grad_norm/bias"] == pytest.approx(expected_b, rel=1e-9)
    assert measurement.layers["grad_to_weight"] == pytest.approx(
        [g / w for g, w in zip(expected_w, weight_norms, strict=True)], rel=1e-9
    )
    # plain SGD moves W by lr * grad, so the update ratio is lr * ||grad|| / ||W||
    assert measurement.layers["update_ratio"] == pytest.approx(
        [0.1 * g / w for g, w in zip(expected_w, weight_norms, strict=True)], rel=1e-9
    )
    assert measurement.first_to_last_grad_ratio == pytest.approx(expected_w[0] / expected_w[-1], rel=1e-9)
    total = math.sqrt(sum(torch.linalg.norm(g).item() ** 2 for g in grads))
    assert measurement.total_grad_norm == pytest.approx(total, rel=1e-9)


def manual_deltas(model: MLP, x, y):
    """Per-example errors d loss_i / d z_l by the chain rule, from the output back (no autograd)."""
    layers = plain_layers(model)
    with torch.no_grad():
        h, zs = x, []
        for w, b in layers[:-1]:
            zs.append(h @ w.T + b)
            h = model.activation(zs[-1])
        logits = h @ layers[-1][0].T + layers[-1][1]
        delta = torch.softmax(logits, dim=1) - F.one_hot(y, logits.shape[1])  # d loss_i / d logits_i
        deltas = [delta]
        for index in range(len(zs) - 1, -1, -1):
            delta = model.activation.vjp(zs[index], delta @ layers[index + 1][0])
            deltas.insert(0, delta)
    return [d.norm(dim=1).mean().item() for d in deltas]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "softmax", "elu"])
def test_delta_norms_equal_a_manual_backward(activation):
    model = float64_model(activation, depth=5)
    x, y = batch()
    expected = manual_deltas(model, x[0], y[0])
    [measurement], _ = measured_step(model, x, y)
    assert measurement.layers["delta_norm"] == pytest.approx(expected, rel=1e-9)
    assert measurement.first_to_last_delta_ratio == pytest.approx(expected[0] / expected[-1], rel=1e-9)


def test_each_run_of_a_stack_is_measured_as_if_alone():
    seeds = (0, 1, 2)
    stacked = float64_model("tanh", seeds=seeds, norm="layernorm")
    x, y = batch(stack=3)
    together, _ = measured_step(stacked, x, y)
    for k, seed in enumerate(seeds):
        [alone], _ = measured_step(float64_model("tanh", seeds=(seed,), norm="layernorm"), x[:1], y[:1])
        for metric, values in alone.layers.items():
            assert together[k].layers[metric] == pytest.approx(values, rel=1e-9, abs=1e-15), metric
        assert together[k].extra["train/batch_loss"] == pytest.approx(alone.extra["train/batch_loss"], rel=1e-12)
    assert together[0].layers["grad_norm/weight"] != pytest.approx(together[1].layers["grad_norm/weight"])


@pytest.mark.parametrize(
    ("overrides", "depth"), [({"norm": "batchnorm"}, 2), ({"residual": True}, 4), ({"dropout": 0.3}, 3)]
)
def test_norms_residual_and_dropout_are_measured(overrides, depth):
    """One value per layer (depth + 1 with the output layer) and per hidden layer: the norm, the skip and
    the dropout add modules, never layers."""
    model = float64_model("relu", depth=depth, **overrides)
    model.seed_dropout([0], 0, torch.device("cpu"))
    x, y = batch()
    [measurement], trace = measured_step(model, x, y)
    assert len(measurement.layers["activation/std"]) == depth
    assert len(measurement.layers["delta_norm"]) == len(measurement.layers["grad_norm/weight"]) == depth + 1
    assert all(math.isfinite(v) and v > 0 for v in measurement.layers["delta_norm"])
    if "norm" in overrides:  # u is the normalised pre-activation: std 1 over the batch, per unit
        assert measurement.layers["preactivation/std"] == pytest.approx([1.0] * depth, abs=0.02)
    # u is what the activation saw; a its output before dropout
    torch.testing.assert_close(trace.a[0], torch.relu(trace.u[0]))


def test_hidden_stats_by_hand():
    sigmoid = build_activation("sigmoid")
    u = torch.tensor([[[0.0, 10.0], [-10.0, 0.1]]], dtype=torch.float64)
    a = sigmoid(u)
    stats = hidden_stats(torch.stack([u, a]), sigmoid.derivative(u) < 0.01 * 0.25)[:, 0].tolist()
    # f'(+-10) = 4.5e-5 < 0.0025 (saturated); f'(0) = 0.25 and f'(0.1) = 0.2494 are not
    assert stats[2] == 0.5
    assert stats[3] == 0.0  # sigmoid is never exactly 0
    assert stats[0] == pytest.approx(a.mean().item()) and stats[4] == pytest.approx(u.std().item())

    relu = build_activation("relu")
    u = torch.tensor([[[-1.0, 2.0, -3.0], [-0.5, -1.0, 4.0], [-2.0, 0.5, 1.0]]])
    stats = hidden_stats(torch.stack([u, relu(u)]), relu.derivative(u) < 0.01)[:, 0]
    assert stats[3].item() == pytest.approx(1 / 3)  # the first unit is 0 for every example: dead
    assert stats[2].item() == pytest.approx(5 / 9)  # f' = 0 wherever u < 0: 5 of 9 entries
    # dead is zero for every example: not a unit that is negative, positive or NaN for one of them
    a = torch.tensor([[[0.0, 0.0, 0.0, 0.0, 0.0], [0.0, -1.0, 2.0, math.nan, -0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]])
    stats = hidden_stats(torch.stack([a, a]), torch.zeros_like(a, dtype=torch.bool))[:, 0]
    assert stats[3].item() == pytest.approx(2 / 5)  # units 1 and 5 (-0.0 is zero)


def test_saturation_is_measured_in_float32_under_bf16():
    """Near sigmoid's 1% threshold (|u| about 6) bf16 holds sigmoid(u) in steps of 0.004: f' computed in
    bf16 is 0 or 0.0039, never 0.0025. The monitor takes f' of u in float32."""
    sigmoid = build_activation("sigmoid")
    u = torch.linspace(4.0, 8.0, 4001).to(torch.bfloat16).view(1, 1, -1)
    threshold = 0.01 * 0.25
    exact = (sigmoid.derivative(u.double()) < threshold).double().mean().item()
    measured = hidden_stats(torch.stack([u, sigmoid(u)]), sigmoid.saturated(u.float(), threshold))[2, 0].item()
    in_bf16 = hidden_stats(torch.stack([u, sigmoid(u)]), sigmoid.derivative(u) < threshold)[2, 0].item()
    assert measured == pytest.approx(exact, abs=1e-6)
    assert abs(in_bf16 - exact) > 0.05  # what computing it in bf16 would report


def test_bf16_autocast_statistics_match_float32():
    x, y = batch(n=64)
    fp32 = float64_model("tanh", depth=4).float()
    bf16 = float64_model("tanh", depth=4).float()
    [reference], _ = measured_step(fp32, x.float(), y)
    [measured], trace = measured_step(bf16, x.float(), y, autocast=torch.bfloat16)
    assert trace.z[0].dtype == torch.bfloat16
    for metric in ("grad_norm/weight", "delta_norm", "activation/std"):
        assert measured.layers[metric] == pytest.approx(reference.layers[metric], rel=0.03), metric
    assert measured.layers["activation/saturated"] == pytest.approx(reference.layers["activation/saturated"], abs=0.01)


def test_fp16_loss_scale_of_two_to_the_sixteen_gives_finite_unscaled_deltas():
    """B * the fp16 gradient of a 2^16-scaled loss exceeds fp16's 65504 at the output layer; the monitor
    multiplies in float32 and divides by the scale, so delta_norm equals the unscaled float32 one."""
    x, y = batch(n=64)
    [reference], _ = measured_step(float64_model("relu", depth=3).float(), x.float(), y)
    [scaled], trace = measured_step(
        float64_model("relu", depth=3).float(), x.float(), y, autocast=torch.float16, loss_scale=2.0**16
    )
    assert trace.z[-1].grad.dtype == torch.float16
    assert (trace.z[-1].grad.float() * 64).abs().max() > 65504  # fp16 would overflow here
    assert all(math.isfinite(v) for v in scaled.layers["delta_norm"])
    assert scaled.layers["delta_norm"] == pytest.approx(reference.layers["delta_norm"], rel=0.01)


def test_binary_step_is_saturated_everywhere():
    model = float64_model("binary_step", depth=2)
    [measurement], _ = measured_step(model, *batch())
    assert measurement.layers["activation/saturated"] == [1.0, 1.0]
    assert measurement.layers["grad_norm/weight"][0] == 0.0  # nothing reaches the first layer


def test_histograms_hold_the_gradients_and_activations_of_each_run():
    model = float64_model(depth=3, width=8, seeds=(0, 1))
    x, y = batch(stack=2)
    measurements, trace = measured_step(model, x, y, histograms=True)
    for run, measurement in enumerate(measurements):
        grads = measurement.histograms["grad/weight"]
        assert [t.shape for t in grads] == [(96,), (64,), (64,), (40,)]
        for layer, linear in enumerate(model.linears()):  # flattened as the weight is stored: [in, out]
            torch.testing.assert_close(grads[layer], linear.weight.grad[run].flatten())
        for layer, a in enumerate(trace.a):
            torch.testing.assert_close(measurement.histograms["activation"][layer], a[run].flatten().detach())
    assert all(t.device.type == "cpu" for t in measurements[0].histograms["activation"])
    expected_loss = F.cross_entropy(
        plain_forward(plain_layers(float64_model(depth=3, width=8, seeds=(1,))), model.activation, x[1]), y[1]
    ).item()
    assert measurements[1].extra["train/batch_loss"] == pytest.approx(expected_loss, rel=1e-12)


def test_due_steps():
    monitor = GradientMonitor(float64_model(), every_n_steps=50, histogram_every_n_steps=500)
    assert [s for s in range(200) if monitor.due(s)] == [0, 50, 100, 150]
    assert monitor.due(77, last_of_epoch=True)
    assert [s for s in range(1200) if monitor.histograms_due(s)] == [0, 500, 1000]
    assert not GradientMonitor(float64_model(), 50, 0).histograms_due(0)


def test_measure_needs_a_traced_backward_pass():
    model = float64_model()
    monitor = GradientMonitor(model, 1)
    trace = Trace()
    model(batch()[0], trace)
    with pytest.raises(RuntimeError, match="whose backward has run"):
        monitor.measure(
            0, trace, Stepped([torch.zeros_like(p) for p in model.parameters()], None), monitor.weight_norms()
        )


def test_bf16_run_on_the_cpu_matches_fp32_at_step_zero(tmp_path):
    """The whole trainer under bf16 autocast, monitor on: the step-0 profile is fp32's within bf16's
    precision, every number finite."""
    from vgbench.train import run

    common = [*TINY, "activation=tanh", "model.depth=4", "trainer.epochs=1", "logger.tensorboard=false"]
    fp32 = run(make_cfg(*common), tmp_path / "fp32")["profile"]["step0"]["layers"]
    bf16 = run(make_cfg(*common, "trainer.amp=bf16"), tmp_path / "bf16")["profile"]["step0"]["layers"]
    for metric in ("grad_norm/weight", "delta_norm"):
        assert bf16[metric] == pytest.approx(fp32[metric], rel=0.05), metric
    assert bf16["activation/saturated"] == pytest.approx(fp32["activation/saturated"], abs=0.02)
    rows = read_rows(tmp_path / "bf16" / "layers.csv")
    assert all(math.isfinite(float(r["delta_norm"])) for r in rows)


@pytest.mark.mnist
@pytest.mark.slow
def test_vanishing_on_mnist_at_step_zero(tmp_path):
    """Seeded: with init=auto, 10 sigmoid layers pass back < 1e-3 of the gradient; 10 ReLU layers > 0.1."""
    from vgbench.train import run

    common = [
        "model.depth=10",
        "data.limit_train=640",
        "data.val_size=0",
        "trainer.epochs=1",
        "trainer.device=cpu",
        "logger.tensorboard=false",
        "trainer.checkpoint=false",
    ]
    sigmoid = run(make_cfg("activation=sigmoid", *common), tmp_path / "sigmoid")
    relu = run(make_cfg("activation=relu", *common), tmp_path / "relu")
    assert sigmoid["first_to_last_grad_ratio"]["step0"] < 1e-3
    assert relu["first_to_last_grad_ratio"]["step0"] > 1e-1
    assert sigmoid["first_to_last_delta_ratio"]["step0"] < 1e-2
    assert sigmoid["profile"]["step0"]["step"] == 0


def test_layers_of_one_shape_are_measured_together_in_bounded_groups():
    tensors = [torch.zeros(2, 8, 16), torch.zeros(2, 8, 16), torch.zeros(2, 8, 4), torch.zeros(2, 8, 16)]
    tensors.append(torch.zeros(2, 8, 16, dtype=torch.float64))
    assert by_shape(tensors, max_elements=10_000) == [[0, 1, 3], [2], [4]]
    assert by_shape(tensors, max_elements=2 * 256) == [[0, 1], [3], [2], [4]]  # 256 values each
    assert by_shape(tensors, max_elements=1) == [[0], [1], [3], [2], [4]]  # one at least


def test_two_pass_std_and_mean_match_float64():
    x = torch.randn(3, 2, 5000, dtype=torch.float64) * 1e-3 + 0.5  # a small spread about a large mean
    spread, mean = std_mean(x.float())
    assert torch.allclose(spread.double(), x.std(dim=-1), rtol=1e-4)
    assert torch.allclose(mean.double(), x.mean(dim=-1), rtol=1e-6)


def test_widths_that_come_back_keep_each_layer_its_own_statistics():
    """Widths 16, 8, 16, 8: the layers are measured in two groups of one shape (1 and 3, 2 and 4); each
    layer's numbers still sit at its own place, as computed from its own u and a alone."""
    model = float64_model("relu", depth=4, width="[16,8,16,8]")
    [measurement], trace = measured_step(model, *batch())
    for index, (u, a) in enumerate(zip(trace.u, trace.a, strict=True)):
        u, a = u[0].detach(), a[0].detach()
        expected = {
            "activation/mean": a.mean().item(),
            "activation/std": a.std().item(),
            "activation/saturated": (u <= 0).double().mean().item(),
            "activation/dead": (a == 0).all(dim=0).double().mean().item(),
            "preactivation/std": u.std().item(),
        }
        for metric, value in expected.items():
            assert measurement.layers[metric][index] == pytest.approx(value, rel=1e-9, abs=1e-12), (metric, index)
    assert len({measurement.layers["activation/std"][i] for i in range(4)}) == 4
