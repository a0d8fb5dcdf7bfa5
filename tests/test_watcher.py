"""Watching any model (vgbench.watcher): every metric against an independent computation, hooks only while
needed, shared and uncalled modules, reduced precision, refusals, files."""

import copy
import csv
import gc
import json
import math
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vgbench
from tests.conftest import make_cfg
from vgbench.activations import build_activation
from vgbench.errors import UserError
from vgbench.theory import predict
from vgbench.watcher import Watch

LR = 0.1


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.norm(self.conv(x)))


class Mixed(nn.Module):
    """Conv2d, BatchNorm2d, a residual block, GELU and ReLU, Linear, MultiheadAttention."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.block = Residual(4)
        self.proj = nn.Linear(4, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(self.relu(self.stem(x)))
        tokens = self.proj(F.adaptive_avg_pool2d(h, 3).flatten(2).transpose(1, 2))  # [B, 9, 8]
        attended, _ = self.attn(tokens, tokens, tokens)
        return self.head((tokens + attended).mean(dim=1))


def data(batch=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, 6, 6, generator=generator), torch.randint(0, 5, (batch,), generator=generator)


def watched_step(model, x, y, step=0, **options):
    """One SGD step of `model` under a fresh watch; returns the step's measurement and the watch."""
    watch = Watch(model, options.pop("out_dir"), every_n_steps=1, tensorboard=False, **options)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    with watch.step(step) as extra:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        extra["train/batch_loss"] = loss
    return watch


def expected_metrics(model, x, y, layers, activations):
    """The same step computed independently: autograd of the loss with respect to every parameter and to
    each module's output (captured by this test's own hooks), the activations' statistics from closed-form
    derivatives, the update from the model after a plain SGD step."""
    model = copy.deepcopy(model)
    modules = dict(model.named_modules())
    outputs, inputs = {}, {}
    handles = [
        modules[name].register_forward_hook(
            lambda m, a, out, name=name: outputs.setdefault(name, []).append(out[0] if isinstance(out, tuple) else out)
        )
        for name in layers
    ]
    for name in activations:
        handles.append(
            modules[name].register_forward_hook(
                lambda m, a, out, name=name: inputs.setdefault(name, []).append((a[0].detach().clone(), out.detach()))
            )
        )
    loss = F.cross_entropy(model(x), y)
    for handle in handles:
        handle.remove()
    params = dict(model.named_parameters())
    called = [name for name in layers if name in outputs]
    grads = torch.autograd.grad(loss, [*params.values(), *(o for n in called for o in outputs[n])], allow_unused=True)
    param_grads = {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(params.items(), grads, strict=False)}
    output_grads = iter(grads[len(params) :])
    delta = {}  # each call's B * mean_i ||dL/dz_i||, averaged over the calls
    for name in called:
        per_call = [next(output_grads).flatten(1).norm(dim=1).mean() * x.shape[0] for _ in outputs[name]]
        delta[name] = sum(per_call) / len(per_call)
    result = {
        metric: [] for metric in ("grad_norm/weight", "grad_norm/bias", "grad_to_weight", "update_ratio", "delta_norm")
    }
    for name in layers:
        own = [(n, p) for n, p in params.items() if n.rpartition(".")[0] == name]
        weight = [n for n, _ in own if not n.endswith("bias")]
        bias = [n for n, _ in own if n.endswith("bias")]
        g_w = math.sqrt(sum(param_grads[n].pow(2).sum().item() for n in weight))
        w = math.sqrt(sum(params[n].pow(2).sum().item() for n in weight))
        result["grad_norm/weight"].append(g_w)
        result["grad_norm/bias"].append(math.sqrt(sum(param_grads[n].pow(2).sum().item() for n in bias)))
        result["grad_to_weight"].append(g_w / w)
        result["update_ratio"].append(LR * g_w / w)  # plain SGD moves W by lr * grad
        result["delta_norm"].append(delta[name].item() if name in delta else None)
    derivatives = {
        nn.ReLU: lambda u: (u > 0).float(),
        nn.GELU: lambda u: torch.special.ndtr(u) + u * torch.exp(-(u**2) / 2) / math.sqrt(2 * math.pi),
    }
    maxima = {nn.ReLU: 1.0, nn.GELU: 1.1289}  # sup GELU' = 1.1289 at u = 2**0.5 (Phi(u) + u phi(u))
    for metric in ("activation/mean", "activation/std", "activation/saturated", "activation/dead", "preactivation/std"):
        result[metric] = []
    for name in activations:
        kind = type(modules[name])
        [(u, a)] = inputs[name]
        result["activation/mean"].append(a.mean().item())
        result["activation/std"].append(a.std().item())
        result["activation/saturated"].append((derivatives[kind](u).abs() < 0.01 * maxima[kind]).float().mean().item())
        result["activation/dead"].append((a == 0).all(dim=0).float().mean().item())
        result["preactivation/std"].append(u.std().item())
    total = math.sqrt(sum(g.pow(2).sum().item() for g in param_grads.values()))
    return result, total, loss.item()


LAYERS = ["stem", "block.conv", "block.norm", "proj", "attn", "attn.out_proj", "head"]


def test_every_metric_of_every_layer_equals_an_independent_computation(tmp_path):
    torch.manual_seed(0)
    model = Mixed()
    x, y = data()
    expected, total, loss = expected_metrics(model, x, y, LAYERS, ["relu", "block.act"])
    watch = watched_step(model, x, y, out_dir=tmp_path)
    assert [n for n, _ in watch.layers] == LAYERS  # forward order; out_proj after the attention it serves
    assert [n for n, _ in watch.activations] == ["relu", "block.act"]
    measured = watch.profiles["step0"]
    for metric, values in expected.items():
        got = measured["layers"][metric]
        if metric == "delta_norm":  # out_proj's forward is never called: its weights are used by its parent
            assert math.isnan(got[LAYERS.index("attn.out_proj")])
            got, values = [v for v in got if not math.isnan(v)], [v for v in values if v is not None]
        assert got == pytest.approx(values, rel=1e-5, abs=1e-7), metric
    assert measured["total_grad_norm"] == pytest.approx(total, rel=1e-5)
    assert measured["first_to_last_grad_ratio"] == pytest.approx(
        expected["grad_norm/weight"][0] / expected["grad_norm/weight"][-1], rel=1e-5
    )
    assert measured["first_to_last_delta_ratio"] == pytest.approx(
        expected["delta_norm"][0] / expected["delta_norm"][-1], rel=1e-5
    )
    assert watch.last_extra["train/batch_loss"] == pytest.approx(loss, rel=1e-6)
    assert 0 < expected["activation/saturated"][0] < 1  # the check is not vacuous: ReLU's negative half


def test_a_sum_reduced_loss_takes_delta_as_it_is():
    torch.manual_seed(0)
    model, (x, y) = nn.Sequential(nn.Linear(36, 5)), data()
    x = x.flatten(1)
    watch = Watch(model, "unused", every_n_steps=1, tensorboard=False, loss_reduction="sum")
    with watch.step(0):
        out = model(x)
        loss = F.cross_entropy(out, y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, out, retain_graph=True)
        loss.backward()
    assert watch.profiles["step0"]["layers"]["delta_norm"] == pytest.approx([grad.norm(dim=1).mean().item()], rel=1e-6)


class Shared(nn.Module):
    """One Linear called twice (shared weights), another never called."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 6)
        self.shared = nn.Linear(6, 6)
        self.unused = nn.Linear(6, 6)
        self.act = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared(self.act(self.shared(self.act(self.inp(x)))))


def test_a_shared_module_reports_the_mean_over_its_calls_and_an_uncalled_one_nan(tmp_path):
    torch.manual_seed(1)
    model = Shared()
    x, y = torch.randn(8, 6), torch.randint(0, 6, (8,))
    expected, _, _ = expected_metrics(model, x, y, ["inp", "shared", "unused"], [])
    watch = watched_step(model, x, y, out_dir=tmp_path)
    layers = watch.profiles["step0"]["layers"]
    assert [n for n, _ in watch.layers] == ["inp", "shared", "unused"]
    assert layers["delta_norm"][:2] == pytest.approx(expected["delta_norm"][:2], rel=1e-5)  # shared: mean of 2 calls
    assert layers["grad_norm/weight"][:2] == pytest.approx(expected["grad_norm/weight"][:2], rel=1e-5)  # both uses
    assert math.isnan(layers["delta_norm"][2]) and layers["grad_norm/weight"][2] != layers["grad_norm/weight"][2]
    assert len(layers["activation/std"]) == 1  # one module, called twice: the mean of its calls
    path = watch.close()
    summary = json.loads(path.read_text())
    assert summary["profile"]["step0"]["layers"]["delta_norm"][2] is None  # not called: null in JSON


def test_hooks_exist_only_on_measured_steps_and_close_leaves_none(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model, (x, y) = Mixed(), data()
    watch = Watch(model, tmp_path, every_n_steps=3, tensorboard=False)
    reference = weakref.ref(watch)

    def hooks():
        modules = list(model.modules())
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in modules) + sum(
            len(p._post_accumulate_grad_hooks or {}) for p in model.parameters()
        )

    built = []
    monkeypatch.setattr(
        "vgbench.watcher._StepState.__init__", lambda *a: built.append(a) or (_ for _ in ()).throw(AssertionError)
    )
    for step in (1, 2, 4):  # unmeasured: no hook, no state
        with watch.step(step):
            assert hooks() == 0
            F.cross_entropy(model(x), y).backward()
    assert built == []
    monkeypatch.undo()
    with watch.step(3):
        assert hooks() > 0
        F.cross_entropy(model(x), y).backward()
    assert hooks() == 0 and watch.measured_steps == 1
    watch.close()
    del watch
    gc.collect()
    assert reference() is None  # the model keeps no reference to the watcher


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_gives_finite_numbers_within_5_percent_of_float32(tmp_path, precision):
    torch.manual_seed(0)
    model, (x, y) = Mixed(), data()
    reference = watched_step(copy.deepcopy(model), x, y, out_dir=tmp_path / "fp32").profiles["step0"]["layers"]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16) if precision == "fp16" else None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    watch = Watch(model, tmp_path / precision, every_n_steps=1, tensorboard=False, scaler=scaler)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    with watch.step(0):
        with torch.autocast("cpu", dtype=dtype):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad()
        (scaler.scale(loss) if scaler else loss).backward()
        scaler.step(optimizer) if scaler else optimizer.step()
        if scaler:
            scaler.update()
    measured = watch.profiles["step0"]["layers"]
    for metric in ("grad_norm/weight", "grad_norm/bias", "grad_to_weight", "delta_norm"):
        got = [v for v in measured[metric] if not math.isnan(v)]
        want = [v for v in reference[metric] if not math.isnan(v)]
        assert all(math.isfinite(v) for v in got), metric
        big = [(g, w) for g, w in zip(got, want, strict=True) if w > 1e-4]  # a conv bias before batch norm: ~0
        assert [g for g, _ in big] == pytest.approx([w for _, w in big], rel=0.05), metric


@pytest.mark.slow
def test_what_cannot_be_watched_is_one_line(tmp_path):
    with pytest.raises(UserError, match="needs a torch.nn.Module, not list"):
        Watch([], tmp_path)
    with pytest.raises(UserError, match="torch.compile'd; .* Watch the module before compiling it"):
        Watch(torch.compile(nn.Linear(2, 2)), tmp_path)
    with pytest.raises(UserError, match="wrapped in DataParallel, .* watch model.module"):
        Watch(nn.DataParallel(nn.Linear(2, 2)), tmp_path)
    with pytest.raises(UserError, match="no module that holds parameters"):
        Watch(nn.ReLU(), tmp_path)
    with pytest.raises(UserError, match=r"modules=\['nope'\] are not in the model"):
        Watch(Mixed(), tmp_path, modules=["nope"])
    with pytest.raises(UserError, match="loss_reduction='none' is not valid; choose one of: mean, sum"):
        Watch(Mixed(), tmp_path, loss_reduction="none")
    with pytest.raises(UserError, match="every_n_steps=0 is not valid"):
        Watch(Mixed(), tmp_path, every_n_steps=0)


def test_a_watched_run_writes_vgbenchs_files_with_module_names(tmp_path):
    torch.manual_seed(0)
    model, (x, y) = Mixed(), data()
    watch = vgbench.watch(model, out_dir=tmp_path, every_n_steps=2, modules=["block", "head"], config={"arch": "mixed"})
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for step in range(5):
        with watch.step(step) as extra:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            extra["train/batch_loss"] = loss
    summary = json.loads(watch.close().read_text())
    assert summary["layer_names"] == ["block.conv", "block.norm", "head"]  # the modules asked for
    assert summary["activation_names"] == ["block.act"]
    assert summary["measured_steps"] == 3 and summary["profile"]["final"]["step"] == 4
    assert summary["flow"]["kind"] in ("healthy", "vanishing toward the input", "exploding toward the input")
    assert summary["config"] == {"arch": "mixed"} and summary["status"] == "completed"
    rows = list(csv.DictReader((tmp_path / "layers.csv").open()))
    assert [(r["step"], r["name"], r["kind"]) for r in rows[:4]] == [
        ("0", "block.conv", "layer"),
        ("0", "block.norm", "layer"),
        ("0", "head", "layer"),
        ("0", "block.act", "activation"),
    ]
    steps = list(csv.DictReader((tmp_path / "steps.csv").open()))
    assert [r["step"] for r in steps] == ["0", "2", "4"]
    assert float(steps[-1]["train/batch_loss"]) == pytest.approx(summary["final"]["train/batch_loss"])
    assert list(tmp_path.glob("events.out.tfevents.*"))
    with pytest.raises(UserError, match="this watch is closed"), watch.step(6):
        pass


@pytest.mark.slow
def test_a_watched_plain_mlp_gets_the_mean_field_prediction_beside_its_measurement(tmp_path):
    """The prediction from the network's own weights equals vgbench's from the config that drew them, and
    the measurement agrees with it; any other model says the theory does not apply."""
    torch.manual_seed(0)
    widths = [784, *[512] * 10, 10]
    modules = []
    for index, (fan_in, fan_out) in enumerate(zip(widths, widths[1:], strict=False)):
        linear = nn.Linear(fan_in, fan_out)
        nn.init.normal_(linear.weight, std=math.sqrt(1.5 / fan_in))
        nn.init.zeros_(linear.bias)
        modules += [linear, nn.Tanh()] if index < len(widths) - 2 else [linear]
    x, y = torch.randn(256, 784), torch.randint(0, 10, (256,))
    summary = json.loads(watched_step(nn.Sequential(*modules), x, y, out_dir=tmp_path / "mlp").close().read_text())
    predicted = summary["theory"]
    cfg = make_cfg(
        "activation=tanh",
        "model.depth=10",
        "model.width=512",
        "model.init=gaussian",
        "model.sigma_w2=1.5",
        "model.bias_init=zeros",
    )
    expected = predict(cfg, build_activation("tanh"), widths, q0=x.pow(2).mean().item())
    assert predicted["applies"] and predicted["delta_profile"] == pytest.approx(expected["delta_profile"], rel=0.02)
    assert predicted["chi_1"] == pytest.approx(expected["chi_1"], rel=0.01)
    assert 1 / 1.5 < predicted["measured_over_predicted"] < 1.5
    assert predicted["measured_delta_ratio"] == pytest.approx(summary["first_to_last_delta_ratio"]["step0"])
    other = json.loads(watched_step(Mixed(), *data(), out_dir=tmp_path / "mixed").close().read_text())
    assert (
        other["theory"] == {"applies": False, "reason": other["theory"]["reason"]}
        and "plain MLP" in other["theory"]["reason"]
    )


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_a_watched_step_measures_what_the_cpu_does(tmp_path):
    torch.manual_seed(0)
    model, (x, y) = Mixed(), data()
    on_cpu = watched_step(copy.deepcopy(model), x, y, out_dir=tmp_path / "cpu").profiles["step0"]["layers"]
    torch.backends.cudnn.deterministic = True
    on_gpu = watched_step(model.cuda(), x.cuda(), y.cuda(), out_dir=tmp_path / "gpu").profiles["step0"]["layers"]
    for metric, values in on_cpu.items():
        finite = [(g, c) for g, c in zip(on_gpu[metric], values, strict=True) if not math.isnan(c)]
        assert [g for g, _ in finite] == pytest.approx([c for _, c in finite], rel=1e-3, abs=1e-6), metric
