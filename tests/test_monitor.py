"""The monitor against autograd and a hand-written backward pass, in float64."""

import math

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import make_cfg
from vgbench.activations import build_activation
from vgbench.model import MLP, build_model
from vgbench.monitor import GradientMonitor, hidden_stats


def float64_model(activation="tanh", depth=4, width=16, in_features=12, **model_overrides):
    torch.manual_seed(0)
    cfg = make_cfg(f"activation={activation}", f"model.depth={depth}", f"model.width={width}",
                   *[f"model.{k}={v}" for k, v in model_overrides.items()])  # fmt: skip
    return build_model(cfg.model, cfg.activation, in_features, 5).double()


def measured_step(model, x, y, lr=0.1, every_n_steps=1, histograms=False):
    monitor = GradientMonitor(model, every_n_steps)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    with monitor.capture(histograms):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        before = monitor.snapshot_weights()
        loss.backward()
        optimizer.step()
    return monitor, monitor.collect(0, before, {"train/batch_loss": loss.detach()}), before


def batch(n=32, features=12, classes=5):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, features, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=generator)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "softmax", "gelu"])
def test_gradient_norms_equal_autograd(activation):
    model = float64_model(activation)
    x, y = batch()
    reference = float64_model(activation)  # the same weights: same seed
    params = [p for linear in reference.linears() for p in (linear.weight, linear.bias)]
    grads = torch.autograd.grad(F.cross_entropy(reference(x), y), params)
    expected_w = [torch.linalg.norm(g).item() for g in grads[0::2]]
    expected_b = [torch.linalg.norm(g).item() for g in grads[1::2]]
    weight_norms = [torch.linalg.norm(p).item() for p in params[0::2]]

    _, measurement, _ = measured_step(model, x, y, lr=0.1)
    assert measurement.layers["grad_norm/weight"] == pytest.approx(expected_w, rel=1e-9)
    assert measurement.layers["grad_norm/bias"] == pytest.approx(expected_b, rel=1e-9)
    assert measurement.layers["grad_to_weight"] == pytest.approx(
        [g / w for g, w in zip(expected_w, weight_norms, strict=True)], rel=1e-9)  # fmt: skip
    # plain SGD moves W by lr * grad, so the update ratio is lr * ||grad|| / ||W||
    assert measurement.layers["update_ratio"] == pytest.approx(
        [0.1 * g / w for g, w in zip(expected_w, weight_norms, strict=True)], rel=1e-9)  # fmt: skip
    assert measurement.first_to_last_grad_ratio == pytest.approx(expected_w[0] / expected_w[-1], rel=1e-9)
    total = math.sqrt(sum(torch.linalg.norm(g).item() ** 2 for g in grads))
    assert measurement.total_grad_norm == pytest.approx(total, rel=1e-9)


def manual_deltas(model: MLP, x, y):
    """Per-example errors d loss_i / d z_l by the chain rule, from the output back (no autograd)."""
    with torch.no_grad():
        h, zs, us = x, [], []
        for layer in model.hidden:
            z = layer.linear(h)
            zs.append(z)
            us.append(z)  # no norm in these models: the activation's input is z itself
            h = layer.activation(z)
        logits = model.output(h)
        delta = torch.softmax(logits, dim=1) - F.one_hot(y, logits.shape[1])  # d loss_i / d logits_i
        deltas = [delta]
        for index in range(len(model.hidden) - 1, -1, -1):
            upstream = delta @ model.linears()[index + 1].weight
            delta = model.hidden[index].activation.vjp(us[index], upstream)
            deltas.insert(0, delta)
    return [d.norm(dim=1).mean().item() for d in deltas]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "softmax", "elu"])
def test_delta_norms_equal_a_manual_backward(activation):
    model = float64_model(activation, depth=5)
    x, y = batch()
    expected = manual_deltas(model, x, y)
    _, measurement, _ = measured_step(model, x, y)
    assert measurement.layers["delta_norm"] == pytest.approx(expected, rel=1e-9)


def test_hidden_stats_by_hand():
    sigmoid = build_activation("sigmoid")
    u = torch.tensor([[0.0, 10.0], [-10.0, 0.1]], dtype=torch.float64)
    a = sigmoid(u)
    stats = hidden_stats(u, a, sigmoid.derivative(u), 0.01 * 0.25).tolist()
    # f'(+-10) = 4.5e-5 < 0.0025 (saturated); f'(0) = 0.25 and f'(0.1) = 0.2494 are not
    assert stats[2] == 0.5
    assert stats[3] == 0.0  # sigmoid is never exactly 0
    assert stats[0] == pytest.approx(a.mean().item()) and stats[4] == pytest.approx(u.std().item())

    relu = build_activation("relu")
    u = torch.tensor([[-1.0, 2.0, -3.0], [-0.5, -1.0, 4.0], [-2.0, 0.5, 1.0]])
    stats = hidden_stats(u, relu(u), relu.derivative(u), 0.01)
    assert stats[3].item() == pytest.approx(1 / 3)  # the first unit is 0 for every example: dead
    assert stats[2].item() == pytest.approx(5 / 9)  # f' = 0 wherever u < 0: 5 of 9 entries


def test_binary_step_is_saturated_everywhere():
    model = float64_model("binary_step", depth=2)
    x, y = batch()
    _, measurement, _ = measured_step(model, x, y)
    assert measurement.layers["activation/saturated"] == [1.0, 1.0]
    assert measurement.layers["grad_norm/weight"][0] == 0.0  # nothing reaches the first layer


def test_hooks_are_removed_even_on_error():
    model = float64_model()
    monitor = GradientMonitor(model, every_n_steps=1)
    modules = [*model.linears(), *(layer.activation for layer in model.hidden)]
    with pytest.raises(RuntimeError, match="boom"), monitor.capture():
        assert all(len(m._forward_hooks) == 1 for m in modules)
        raise RuntimeError("boom")
    assert all(len(m._forward_hooks) == 0 for m in modules)
    measured_step(model, *batch())
    assert all(len(m._forward_hooks) == 0 for m in modules)


def test_histograms_and_extra_come_back_on_the_host():
    model = float64_model(depth=3, width=8)
    x, y = batch()
    _, measurement, _ = measured_step(model, x, y, histograms=True)
    assert [t.shape for t in measurement.histograms["grad/weight"]] == [(96,), (64,), (64,), (40,)]
    assert [t.shape for t in measurement.histograms["activation"]] == [(256,)] * 3
    assert all(t.device.type == "cpu" for t in measurement.histograms["activation"])
    assert measurement.extra["train/batch_loss"] == pytest.approx(
        F.cross_entropy(float64_model(depth=3, width=8)(x), y).item()
    )


def test_due_steps():
    monitor = GradientMonitor(float64_model(), every_n_steps=50, histogram_every_n_steps=500)
    assert [s for s in range(200) if monitor.due(s)] == [0, 50, 100, 150]
    assert [s for s in range(1200) if monitor.histograms_due(s)] == [0, 500, 1000]
    assert not GradientMonitor(float64_model(), 50, 0).histograms_due(0)


def test_collect_without_a_captured_pass_is_an_error():
    model = float64_model()
    monitor = GradientMonitor(model, 1)
    with pytest.raises(RuntimeError, match="inside capture"):
        monitor.collect(0, monitor.snapshot_weights())


@pytest.mark.mnist
def test_vanishing_on_mnist_at_step_zero(tmp_path):
    """Seeded: with init=auto, 10 sigmoid layers pass back < 1e-3 of the gradient; 10 ReLU layers > 0.1."""
    from vgbench.train import run

    common = ["model.depth=10", "data.limit_train=640", "data.val_size=0", "trainer.epochs=1", "trainer.device=cpu",
              "logger.tensorboard=false", "trainer.checkpoint=false"]  # fmt: skip
    sigmoid = run(make_cfg("activation=sigmoid", *common), tmp_path / "sigmoid")
    relu = run(make_cfg("activation=relu", *common), tmp_path / "relu")
    assert sigmoid["first_to_last_grad_ratio"]["step0"] < 1e-3
    assert relu["first_to_last_grad_ratio"]["step0"] > 1e-1
    assert sigmoid["profile"]["step0"]["step"] == 0
