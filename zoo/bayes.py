"""A layer weight's Gaussian posterior with diagonal plus low-rank covariance (Tomczak, Swaroop and Turner 2020,
"Efficient Low Rank Gaussian Variational Inference for Neural Networks"; the paper's Table 2, docs/paper.md §6).

For one weight tensor W of d entries, q(W) = N(mu, diag(var) + U U^T) with U of shape (d, k), stored as ``factors``
of shape (k, *W.shape) so that each factor lines up with W. A W-Asym layer's fixed entries are not random: the
``mask`` (1 = trainable) zeroes their variance and their rows of U, so they carry no variance and no KL.

Sampling uses the local reparameterisation: for an input x, the layer's output under q is Gaussian with mean
mu x, a diagonal part var x^2 and a rank-k part sum_k (U_k x)(U_k x)^T, and is drawn as
``mu x + sqrt(var x^2) * eps + sum_k z_k (U_k x)`` with eps and z drawn per example: each example's output has
exactly its marginal under q, at the cost of k + 2 matrix products. No maintained PyTorch library offers this
posterior per layer (bayesian-torch, torchbnn and blitz are mean-field; Pyro's low-rank guide is global).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Apply = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (input, weight) -> output: a linear map or a conv


def masked(var: torch.Tensor, factors: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The variance and factors with fixed entries (mask 0) made exactly deterministic."""
    if mask is None:
        return var, factors
    return var * mask, factors * mask


def sample_output(
    x: torch.Tensor,
    mu: torch.Tensor,
    var: torch.Tensor,
    factors: torch.Tensor,
    apply: Apply,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One draw of the layer's output for each example of ``x`` under q, by local reparameterisation.

    ``apply(x, w)`` is the layer's linear map (``F.linear`` or a convolution with its stride and padding); it is
    linear in both arguments, which is what makes the output Gaussian with the moments above."""
    var, factors = masked(var, factors, mask)
    mean = apply(x, mu)
    spread = apply(x * x, var).clamp_min(0).sqrt()
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    out = mean + spread * eps
    for k in range(factors.shape[0]):
        z = torch.randn(mean.shape[0], generator=generator, device=mean.device, dtype=mean.dtype)
        out = out + z.view(-1, *([1] * (mean.dim() - 1))) * apply(x, factors[k])
    return out


def kl_to_prior(
    mu: torch.Tensor,
    var: torch.Tensor,
    factors: torch.Tensor,
    prior_precision: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(q || N(0, I / prior_precision)) over the trainable entries, in closed form.

    With Sigma = D + U U^T (D = diag(var)) and lambda the prior precision, over d trainable entries:
    2 KL = lambda (tr D + ||U||_F^2 + ||mu||^2) - d - d log lambda - log det Sigma, and by the matrix determinant
    lemma log det Sigma = sum log var + log det(I_k + U^T D^-1 U)."""
    keep = torch.ones_like(mu, dtype=torch.bool) if mask is None else mask.bool()
    m, v = mu[keep], var[keep]
    u = factors[:, keep].T  # (d, k)
    d, lam = m.numel(), float(prior_precision)
    capacitance = torch.eye(u.shape[1], dtype=u.dtype, device=u.device) + (u / v[:, None]).T @ u
    logdet = torch.log(v).sum() + torch.logdet(capacitance)
    trace = v.sum() + (u * u).sum()
    return 0.5 * (lam * (trace + (m * m).sum()) - d - d * math.log(lam) - logdet)


class LayerPosterior(nn.Module):
    """The posterior of one ``MaskedLinear`` / ``MaskedConv2d``'s weight and bias, taken as one vector (as the
    authors' code does): its mean is the layer's own parameters (W-Asym: the effective weight, whose fixed entries
    are constants), its covariance diag(exp(log_var)) + U U^T with U of rank ``rank``. The variance of fixed entries
    and their rows of U are zero from the start and receive no gradient."""

    def __init__(self, layer: nn.Module, rank: int, init_log_var: float, learn_diag: bool, factor_scale: float):
        super().__init__()
        self.layer = [layer]  # a plain list: the layer belongs to the model, not to this module's parameters
        mask = layer.trainable_mask().to(layer.weight.dtype)
        self.register_buffer("mask", mask)
        log_var = torch.full_like(layer.weight, init_log_var)
        log_var_b = None if layer.bias is None else torch.full_like(layer.bias, init_log_var)
        if learn_diag:
            self.log_var = nn.Parameter(log_var)
            self.log_var_b = None if log_var_b is None else nn.Parameter(log_var_b)
        else:
            self.register_buffer("log_var", log_var)
            self.register_buffer("log_var_b", log_var_b)
        scale = factor_scale * float(layer.weight.detach().std()) / math.sqrt(max(rank, 1))
        self.factors = nn.Parameter(torch.randn(rank, *layer.weight.shape, dtype=layer.weight.dtype) * scale * mask)
        bias_factors = None if layer.bias is None else 0.01 * torch.randn(rank, *layer.bias.shape)
        self.bias_factors = None if bias_factors is None else nn.Parameter(bias_factors.to(layer.weight.dtype))

    def apply_to(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        layer = self.layer[0]
        if weight.dim() == 2:
            return F.linear(x, weight, bias)
        return F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)

    def noise(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """A draw of (output - mean) for each example: the local reparameterisation of ``sample_output``, bias
        included."""
        var_b = None if self.log_var_b is None else self.log_var_b.exp()
        spread = self.apply_to(x * x, self.log_var.exp() * self.mask, var_b).clamp_min(0).sqrt()
        out = spread * torch.randn_like(mean)
        for k in range(self.factors.shape[0]):
            bias_k = None if self.bias_factors is None else self.bias_factors[k]
            z = torch.randn(mean.shape[0], device=mean.device, dtype=mean.dtype).view(-1, *([1] * (mean.dim() - 1)))
            out = out + z * self.apply_to(x, self.factors[k] * self.mask, bias_k)
        return out

    def kl(self, prior_precision: float) -> torch.Tensor:
        """KL of the layer's trainable entries and bias to N(0, I / prior_precision) (``kl_to_prior``)."""
        layer = self.layer[0]
        keep = self.mask.bool().reshape(-1)
        mu = layer.weight.reshape(-1)[keep]
        var = self.log_var.exp().reshape(-1)[keep]
        factors = self.factors.reshape(self.factors.shape[0], -1)[:, keep]
        if layer.bias is not None:
            mu = torch.cat([mu, layer.bias])
            var = torch.cat([var, self.log_var_b.exp()])
            factors = torch.cat([factors, self.bias_factors], dim=1)
        return kl_to_prior(mu, var, factors, prior_precision)


class Posterior(nn.Module):
    """A whole network made Bayesian: a ``LayerPosterior`` per masked linear and conv layer, whose noise a forward
    hook adds to the layer's output. ``sampling`` off gives the network at its posterior mean."""

    def __init__(self, model: nn.Module, rank: int = 4, init_log_var: float = -10.0, learn_diag: bool = False):
        super().__init__()
        from symzoo.zoo.layers import AsymmetricWeight

        self.sampling = True
        layers = {n.replace(".", "/"): m for n, m in model.named_modules() if isinstance(m, AsymmetricWeight)}
        self.layers = nn.ModuleDict(
            {n: LayerPosterior(m, rank, init_log_var, learn_diag, factor_scale=0.5) for n, m in layers.items()}
        )
        for name, layer in layers.items():
            layer.register_forward_hook(self._hook(name))

    def _hook(self, name: str):
        def add_noise(layer: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:
            return output + self.layers[name].noise(inputs[0], output) if self.sampling else output

        return add_noise

    def kl(self, prior_precision: float) -> torch.Tensor:
        return sum((p.kl(prior_precision) for p in self.layers.values()), torch.zeros(()))
