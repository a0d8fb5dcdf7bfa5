"""Random MLPs built from torch alone (autograd for the errors), for checking vgbench's mean-field theory
against Monte Carlo: no code shared with vgbench.model, vgbench.meanfield or vgbench.theory."""

import math

import torch
import torch.nn.functional as F


def random_network(
    f,
    sizes,
    sigma_w2,
    sigma_b2=0.0,
    examples=32,
    seed=0,
    norm="none",
    residual=False,
    dropout=0.0,
    x=None,
    cross_entropy=False,
):
    """One random MLP of layer sizes [in, hidden..., out], weights N(0, sigma_w2 / fan_in), biases
    N(0, sigma_b2), h_l = [h_{l-1} +] dropout(f(norm(z_l))) with the skip where the widths match, on Gaussian
    inputs (E x^2 = 1) unless x is given; a random Gaussian error at the output, or (cross_entropy) the error of
    softmax cross-entropy on random labels. Returns E z_l^2 per hidden
    layer and sum over the batch of |delta_l|^2 per layer relative to the output's (the output last)."""
    generator = torch.Generator().manual_seed(seed)
    h = x if x is not None else torch.randn(examples, sizes[0], generator=generator, dtype=torch.float64)
    zs = []
    for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1], strict=True):
        weight = torch.randn(fan_in, fan_out, generator=generator, dtype=torch.float64) * math.sqrt(sigma_w2 / fan_in)
        z = h @ weight + torch.randn(fan_out, generator=generator, dtype=torch.float64) * math.sqrt(sigma_b2)
        z.retain_grad() if z.requires_grad else z.requires_grad_(True)
        zs.append(z)
        u = z
        if norm == "layernorm":
            u = F.layer_norm(z, (fan_out,))
        elif norm == "batchnorm":
            u = F.batch_norm(z, None, None, training=True)
        a = f(u)
        if dropout:
            keep = 1 - dropout
            a = a * (torch.rand(a.shape, generator=generator, dtype=torch.float64) < keep) / keep
        h = h + a if residual and fan_in == fan_out else a
    weight = torch.randn(sizes[-2], sizes[-1], generator=generator, dtype=torch.float64) * math.sqrt(
        sigma_w2 / sizes[-2]
    )
    out = h @ weight
    if cross_entropy:
        out.retain_grad()
        labels = torch.randint(sizes[-1], (out.shape[0],), generator=generator)
        F.cross_entropy(out, labels, reduction="sum").backward()
        error = out.grad
    else:
        error = torch.randn(out.shape, generator=generator, dtype=torch.float64)
        (out * error).sum().backward()
    squared = [float(z.grad.pow(2).sum()) for z in zs] + [float(error.pow(2).sum())]
    return [float(z.detach().pow(2).mean()) for z in zs], [s / squared[-1] for s in squared]


def averaged(networks):
    """The mean over networks of each returned list, entry by entry."""
    return [[sum(values) / len(values) for values in zip(*lists, strict=True)] for lists in zip(*networks, strict=True)]
