"""Lesson: backpropagation by hand, checked against autograd.

(a) The two-neuron worked example of the course: x -> sigmoid neuron 1 -> sigmoid neuron 2, target T,
    error E = 1/2 (T - a2)^2, every intermediate value printed, one gradient-descent step taken.
(b) A from-scratch MLP: forward keeps each layer's z and a; backward applies the chain rule layer by
    layer, delta_L = dE/dz_L at the output, then delta_l = f'(z_l) * (W_{l+1}^T delta_{l+1}), and
    dE/dW_l = delta_l a_{l-1}^T, dE/db_l = delta_l. No autograd: the derivatives come from the
    activation registry (`Activation.vjp`). It matches torch.autograd to 1e-10 in float64, trains XOR
    and an MNIST subset, and shows the per-layer delta norms shrinking with depth for sigmoid but not
    for ReLU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import Tensor

from vgbench.activations import Activation, build_activation
from vgbench.figures import save_figure
from vgbench.files import write_atomic


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def two_neuron_example(
    x: float = 0.1,
    w1: float = 0.15,
    b1: float = 0.4,
    w2: float = 0.45,
    b2: float = 0.65,
    target: float = 0.25,
    lr: float = 0.4,
) -> dict[str, float]:
    """Every number of the worked example, in plain Python floats, in the order one computes them."""
    z1 = w1 * x + b1
    a1 = sigmoid(z1)
    z2 = w2 * a1 + b2
    a2 = sigmoid(z2)
    error = 0.5 * (target - a2) ** 2
    delta2 = (a2 - target) * a2 * (1 - a2)  # dE/dz2 = dE/da2 * sigma'(z2)
    delta1 = delta2 * w2 * a1 * (1 - a1)  # dE/dz1 = dE/dz2 * dz2/da1 * sigma'(z1): one more sigma' factor
    return {
        "z1": z1,
        "a1": a1,
        "z2": z2,
        "a2": a2,
        "E": error,
        "dE/dw2": delta2 * a1,
        "dE/db2": delta2,
        "dE/dw1": delta1 * x,
        "dE/db1": delta1,
        "w2_new": w2 - lr * delta2 * a1,
        "b2_new": b2 - lr * delta2,
        "w1_new": w1 - lr * delta1 * x,
        "b1_new": b1 - lr * delta1,
        "ratio dE/dw2 : dE/dw1": (delta2 * a1) / (delta1 * x),
    }


def two_neuron_autograd(
    x: float = 0.1, w1: float = 0.15, b1: float = 0.4, w2: float = 0.45, b2: float = 0.65, target: float = 0.25
) -> dict[str, float]:
    """The same four gradients from torch.autograd, for comparison."""
    params = {
        name: torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for name, v in (("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2))
    }
    a1 = torch.sigmoid(params["w1"] * x + params["b1"])
    a2 = torch.sigmoid(params["w2"] * a1 + params["b2"])
    (0.5 * (target - a2) ** 2).backward()
    return {f"dE/d{name}": p.grad.item() for name, p in params.items()}


# --- (b) an MLP with a hand-written backward pass ---


Gradients = tuple[float, list[Tensor], list[Tensor], list[Tensor]]  # loss, dE/dW_l, dE/db_l, delta_l


@dataclass
class ManualMLP:
    """Weights W_l (out x in) and biases b_l as plain tensors; the activation f for hidden layers."""

    weights: list[Tensor]
    biases: list[Tensor]
    activation: Activation

    @classmethod
    def random(
        cls,
        sizes: list[int],
        activation: Activation,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        gain: float | None = None,
    ) -> ManualMLP:
        """Gaussian weights with std gain / sqrt(fan_in) (gain: sqrt(2) for ReLU-like units, 1 otherwise)."""
        generator = torch.Generator().manual_seed(seed)
        gain = gain if gain is not None else (math.sqrt(2) if activation.kaiming_nonlinearity else 1.0)
        weights = [
            torch.randn(n_out, n_in, generator=generator, dtype=dtype) * gain / math.sqrt(n_in)
            for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)
        ]
        biases = [0.1 * torch.randn(n_out, generator=generator, dtype=dtype) for n_out in sizes[1:]]
        return cls(weights, biases, activation)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Logits, and each layer's input a_{l-1} and pre-activation z_l (what backward needs)."""
        inputs, pre_activations = [], []
        a = x
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            inputs.append(a)
            z = a @ weight.T + bias
            pre_activations.append(z)
            a = z if index == len(self.weights) - 1 else self.activation(z)
        return a, inputs, pre_activations

    def loss_and_gradients(self, x: Tensor, y: Tensor, loss: str = "cross_entropy") -> Gradients:
        """Mean loss, dE/dW_l, dE/db_l and the per-example delta_l of every layer, by the chain rule."""
        logits, inputs, pre_activations = self.forward(x)
        batch = x.shape[0]
        probabilities = torch.softmax(logits, dim=1)
        one_hot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
        if loss == "cross_entropy":  # E = -log p_y: dE/dz = p - onehot
            value = -torch.log(probabilities[torch.arange(batch), y]).mean()
            delta = probabilities - one_hot
        else:  # quadratic: E = 1/2 ||p - onehot||^2, back through softmax's Jacobian
            value = 0.5 * ((probabilities - one_hot) ** 2).sum(dim=1).mean()
            g = probabilities - one_hot
            delta = probabilities * (g - (g * probabilities).sum(dim=1, keepdim=True))
        weight_grads, bias_grads, deltas = [], [], []
        for index in range(len(self.weights) - 1, -1, -1):
            deltas.insert(0, delta)
            weight_grads.insert(0, delta.T @ inputs[index] / batch)  # mean over the batch
            bias_grads.insert(0, delta.mean(dim=0))
            if index > 0:  # delta_{l-1} = f'(z_{l-1}) * (W_l^T delta_l)
                delta = self.activation.vjp(pre_activations[index - 1], delta @ self.weights[index])
        return float(value), weight_grads, bias_grads, deltas

    def sgd_step(self, x: Tensor, y: Tensor, lr: float, loss: str = "cross_entropy") -> float:
        value, weight_grads, bias_grads, _ = self.loss_and_gradients(x, y, loss)
        self.weights = [w - lr * g for w, g in zip(self.weights, weight_grads, strict=True)]
        self.biases = [b - lr * g for b, g in zip(self.biases, bias_grads, strict=True)]
        return value

    def accuracy(self, x: Tensor, y: Tensor) -> float:
        return float((self.forward(x)[0].argmax(dim=1) == y).double().mean())


def autograd_gradients(
    mlp: ManualMLP, x: Tensor, y: Tensor, loss: str = "cross_entropy"
) -> tuple[list[Tensor], list[Tensor]]:
    """The same gradients from torch.autograd on the same weights."""
    from vgbench.losses import LOSSES

    weights = [w.clone().requires_grad_() for w in mlp.weights]
    biases = [b.clone().requires_grad_() for b in mlp.biases]
    a = x
    for index, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
        z = a @ weight.T + bias
        a = z if index == len(weights) - 1 else mlp.activation(z)
    grads = torch.autograd.grad(LOSSES[loss](a, y).mean(), weights + biases)
    return list(grads[: len(weights)]), list(grads[len(weights) :])


def xor_data(dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    return torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=dtype), torch.tensor([0, 1, 1, 0])


def train_xor(
    activation: str = "tanh", steps: int = 2000, lr: float = 0.5, seed: int = 0
) -> tuple[ManualMLP, list[float]]:
    x, y = xor_data()
    mlp = ManualMLP.random([2, 8, 2], build_activation(activation), seed=seed)
    losses = [mlp.sgd_step(x, y, lr) for _ in range(steps)]
    return mlp, losses


def mnist_subset(limit: int = 2000) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The first `limit` MNIST training images (train) and 1000 test images, float64, standardised."""
    from vgbench.config import compose_config
    from vgbench.data import load_data

    cfg = compose_config([f"data.limit_train={limit}", "data.limit_test=1000", "data.val_size=0"])
    data = load_data(cfg.data, torch.device("cpu"))
    return data.train.x.double(), data.train.y, data.test.x.double(), data.test.y


def delta_profile(activation: str, depth: int, x: Tensor, y: Tensor, width: int = 64) -> list[float]:
    """Mean per-example ||delta_l|| for every layer (1 = input side) of a fresh MLP."""
    act = build_activation(activation)
    mlp = ManualMLP.random([x.shape[1], *[width] * depth, 10], act, seed=0)
    _, _, _, deltas = mlp.loss_and_gradients(x, y)
    return [float(d.norm(dim=1).mean()) for d in deltas]


def run_lesson(out_dir: Path | None = None, mnist_limit: int = 2000, mnist_epochs: int = 3) -> str:
    """Everything (a) and (b) compute, as text; figures too when `out_dir` is given."""
    setting = "x = 0.1, w1 = 0.15, b1 = 0.4, w2 = 0.45, b2 = 0.65, target T = 0.25, E = 1/2 (T - a2)^2, lr 0.4"
    lines = ["# Backpropagation by hand", "", "## (a) Two sigmoid neurons", "", setting, ""]
    example = two_neuron_example()
    autograd = two_neuron_autograd()
    lines += [f"    {name:>22s} = {value:.6g}" for name, value in example.items()]
    lines += [
        "",
        "autograd agrees: " + ", ".join(f"{k} {autograd[k]:.6g}" for k in autograd),
        "",
        f"dE/dw1 is {example['ratio dE/dw2 : dE/dw1']:.1f} times smaller than dE/dw2: it carries one more "
        f"sigma'(z) <= 0.25 factor (here sigma'(z1) = {example['a1'] * (1 - example['a1']):.4f}) and a "
        f"weight (w2 = 0.45), and x = 0.1 in place of a1 = {example['a1']:.4f}.",
        "",
    ]

    lines += ["## (b) An MLP with a hand-written backward pass", ""]
    x = torch.randn(16, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(1))
    worst = 0.0
    for depth in range(1, 7):
        mlp = ManualMLP.random([6, *[5] * depth, 3], build_activation("tanh"), seed=depth)
        _, manual_w, _, _ = mlp.loss_and_gradients(x, y)
        auto_w, _ = autograd_gradients(mlp, x, y)
        worst = max(worst, max(float((m - a).abs().max()) for m, a in zip(manual_w, auto_w, strict=True)))
    lines.append(f"Against torch.autograd (tanh, depths 1 to 6, float64): largest difference {worst:.1e}.")
    model, losses = train_xor()
    xor_x, xor_y = xor_data()
    lines.append(
        f"XOR, 2-8-2 tanh MLP, 2000 SGD steps: loss {losses[0]:.3f} -> {losses[-1]:.4f}, "
        f"accuracy {model.accuracy(xor_x, xor_y):.2f}."
    )

    train_x, train_y, test_x, test_y = mnist_subset(mnist_limit)
    mnist = ManualMLP.random([784, 64, 10], build_activation("relu"), seed=0)
    for _ in range(mnist_epochs):
        for start in range(0, len(train_y), 64):
            mnist.sgd_step(train_x[start : start + 64], train_y[start : start + 64], lr=0.1)
    accuracy = mnist.accuracy(test_x, test_y)
    lines.append(
        f"MNIST, first {mnist_limit} training images, 784-64-10 ReLU MLP, {mnist_epochs} epochs of "
        f"hand-written SGD: test accuracy {accuracy:.3f} on 1000 test images."
    )

    depth = 8
    profiles = {a: delta_profile(a, depth, train_x[:256], train_y[:256]) for a in ("sigmoid", "relu")}
    lines += [
        "",
        f"Per-layer mean ||delta_l|| of a fresh {depth}-hidden-layer MLP on 256 MNIST images (layer 1 = input side):",
        "",
    ]
    for activation, profile in profiles.items():
        lines.append(f"    {activation:8s} " + " ".join(f"{v:.2e}" for v in profile))
    shrink = {a: p[0] / p[-1] for a, p in profiles.items()}
    lines.append(f"\nFirst layer / output layer: sigmoid {shrink['sigmoid']:.1e}, relu {shrink['relu']:.2f}.")
    text = "\n".join(lines) + "\n"

    if out_dir is not None:
        figure = Figure(figsize=(10, 3.6))
        axes = figure.add_subplot(1, 2, 1)
        for activation, profile in profiles.items():
            axes.semilogy(range(1, len(profile) + 1), profile, "o-", label=activation)
        axes.set_xlabel("layer (1 = input side)")
        axes.set_ylabel("mean ||delta_l||")
        axes.set_title(f"Back-propagated error, {depth} hidden layers, at initialisation", fontsize=9)
        axes.legend()
        axes = figure.add_subplot(1, 2, 2)
        axes.semilogy(losses)
        axes.set_xlabel("SGD step")
        axes.set_ylabel("loss")
        axes.set_title("XOR with the hand-written backward pass", fontsize=9)
        figure.tight_layout()
        save_figure(figure, out_dir / "backprop.png")
        write_atomic(out_dir / "summary.md", text.encode())
    return text
