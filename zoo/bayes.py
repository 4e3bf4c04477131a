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

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# An output's variance is floored here before its square root: a bias-free convolution over a receptive field of
# exact zeros (after a ReLU, in the padding) has variance 0, where sqrt's gradient is infinite and training turns
# to NaN at the first step (the authors' code floors convolutions at the same value).
MIN_VARIANCE = 1e-16
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
    spread = apply(x * x, var).clamp_min(MIN_VARIANCE).sqrt()
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
    and their rows of U are zero from the start and receive no gradient.

    ``prior_precision`` is this layer's: the authors scale the configured precision by the layer's width (a linear
    layer's outputs, a convolution's input channels), so wide layers get a tighter prior."""

    def __init__(
        self,
        layer: nn.Module,
        rank: int,
        init_log_var: float,
        learn_diag: bool,
        factor_scale: float,
        prior_precision: float = 1.0,
    ):
        super().__init__()
        self.layer = [layer]  # a plain list: the layer belongs to the model, not to this module's parameters
        self.prior_precision = float(prior_precision)
        self.generator: torch.Generator | None = None  # set by ``Posterior.seed``: noise reproducible by seed
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
        draw = seeded_draw(layer)
        scale = factor_scale * float(layer.weight.detach().std()) / math.sqrt(max(rank, 1))
        if layer.weight.dim() > 2:
            scale = 0.0  # the authors start a convolution's factors at zero
        factors = draw((rank, *layer.weight.shape)) * scale * mask
        self.factors = nn.Parameter(factors.to(layer.weight.dtype))
        bias_factors = None if layer.bias is None else 0.01 * draw((rank, *layer.bias.shape))
        self.bias_factors = None if bias_factors is None else nn.Parameter(bias_factors.to(layer.weight.dtype))

    def variance(self) -> torch.Tensor:
        """The weight's diagonal variance as used: zero at fixed entries."""
        return self.log_var.exp() * self.mask

    def apply_to(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        layer = self.layer[0]
        if weight.dim() == 2:
            return F.linear(x, weight, bias)
        return F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)

    def _normal(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=like.device, dtype=like.dtype)

    def noise(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """A draw of (output - mean) for each example: the local reparameterisation of ``sample_output``, bias
        included. The rank factors go through one stacked product (k maps as one weight of k times the outputs)."""
        var_b = None if self.log_var_b is None else self.log_var_b.exp()
        spread = self.apply_to(x * x, self.variance(), var_b).clamp_min(MIN_VARIANCE).sqrt()
        out = spread * self._normal(mean.shape, mean)
        rank = self.factors.shape[0]
        if rank:
            stacked = (self.factors * self.mask).flatten(0, 1)  # (k * out, ...)
            bias = None if self.bias_factors is None else self.bias_factors.flatten()
            low_rank = self.apply_to(x, stacked, bias).unflatten(1, (rank, mean.shape[1]))  # (B, k, out, ...)
            z = self._normal((mean.shape[0], rank), mean).view(mean.shape[0], rank, *([1] * (mean.dim() - 1)))
            out = out + (z * low_rank).sum(1)
        return out

    def kl(self) -> torch.Tensor:
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
        return kl_to_prior(mu, var, factors, self.prior_precision)

    def state_tensors(self) -> list[torch.Tensor]:
        """What a zoo stores of this layer beside its mean, in a fixed order."""
        parts = [self.log_var, self.log_var_b, self.factors, self.bias_factors]
        return [t for t in parts if t is not None]


def seeded_draw(layer: nn.Module) -> Callable[[tuple[int, ...]], torch.Tensor]:
    """Standard normal draws for a layer's initial factors from the generator its network's init left behind
    (``Posterior`` passes one): the same network seed gives the same posterior."""
    generator = getattr(layer, "_posterior_generator", None)
    return lambda shape: torch.randn(shape, generator=generator, dtype=torch.float32)


def layer_width(layer: nn.Module) -> int:
    """The width the authors scale a layer's prior precision by: a linear layer's outputs, a conv's inputs."""
    return layer.weight.shape[0] if layer.weight.dim() == 2 else layer.weight.shape[1]


class Posterior(nn.Module):
    """A whole network made Bayesian: a ``LayerPosterior`` per masked linear and conv layer, whose noise a forward
    hook adds to the layer's output. ``sampling`` off gives the network at its posterior mean.

    ``seed`` draws the initial factors and every later noise draw reproducibly; ``scale_prior`` multiplies
    ``prior_precision`` by each layer's width (``layer_width``), as the authors' code does."""

    def __init__(
        self,
        model: nn.Module,
        rank: int = 4,
        init_log_var: float = -10.0,
        learn_diag: bool = False,
        prior_precision: float = 1.0,
        scale_prior: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        from symzoo.zoo.layers import AsymmetricWeight, seeded_generator

        self.sampling = True
        layers = {n.replace(".", "/"): m for n, m in model.named_modules() if isinstance(m, AsymmetricWeight)}
        init = seeded_generator("symzoo-posterior-init", seed)
        posteriors = {}
        for name, m in layers.items():
            m._posterior_generator = init
            precision = prior_precision * (layer_width(m) if scale_prior else 1)
            posteriors[name] = LayerPosterior(m, rank, init_log_var, learn_diag, 0.5, precision)
            del m._posterior_generator
        self.layers = nn.ModuleDict(posteriors)
        for name, layer in layers.items():
            layer.register_forward_hook(self._hook(name))
        self.seed(seed)

    def seed(self, seed: int) -> None:
        """Restart the noise stream (one generator, on the model's device, shared by every layer)."""
        from symzoo.zoo.layers import stable_seed

        first = next(iter(self.layers.values()))
        device = first.mask.device
        generator = torch.Generator(device=device).manual_seed(stable_seed("symzoo-posterior-noise", seed))
        for layer in self.layers.values():
            layer.generator = generator

    def _hook(self, name: str):
        def add_noise(layer: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:
            return output + self.layers[name].noise(inputs[0], output) if self.sampling else output

        return add_noise

    def kl(self) -> torch.Tensor:
        return sum((p.kl() for p in self.layers.values()), torch.zeros(()))

    def state_vector(self) -> torch.Tensor:
        """Every layer's variance parameters (log-variances, then factors, weight before bias) as one flat float32
        vector in layer order: the zoo's ``posterior_final`` column (``load_state_vector`` reads it back)."""
        return torch.cat(
            [t.detach().reshape(-1).float().cpu() for p in self.layers.values() for t in p.state_tensors()]
        )

    def load_state_vector(self, vector: torch.Tensor | np.ndarray) -> Posterior:
        vector = torch.as_tensor(vector)
        tensors = [t for p in self.layers.values() for t in p.state_tensors()]
        size = sum(t.numel() for t in tensors)
        if vector.numel() != size:
            raise ValueError(f"a posterior vector of {vector.numel()} values for a posterior of {size}")
        offset = 0
        with torch.no_grad():
            for t in tensors:
                t.copy_(vector[offset : offset + t.numel()].view_as(t))
                offset += t.numel()
        return self


def posterior_size(model: nn.Module, rank: int) -> int:
    """Values in a network's stored posterior: (1 + rank) per weight and bias entry of its linear and conv layers."""
    from symzoo.zoo.layers import AsymmetricWeight

    entries = sum(
        m.weight.numel() + (0 if m.bias is None else m.bias.numel())
        for m in model.modules()
        if isinstance(m, AsymmetricWeight)
    )
    return (1 + rank) * entries
