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
