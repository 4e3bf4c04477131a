"""The low-rank Gaussian posterior of Table 2's Bayesian networks (zoo/bayes.py), checked against independent
computations: torch's own low-rank Gaussian, Monte Carlo, the mean-field formula and sampled weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import LowRankMultivariateNormal, MultivariateNormal, kl_divergence

from symzoo.zoo.bayes import kl_to_prior, sample_output


def posterior(shape: tuple[int, ...], rank: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=g, dtype=torch.float64) * 0.3
    var = torch.rand(shape, generator=g, dtype=torch.float64) * 0.05 + 0.01
    factors = torch.randn((rank, *shape), generator=g, dtype=torch.float64) * 0.1
    return mu, var, factors


def isotropic(d: int, precision: float) -> MultivariateNormal:
    """The prior N(0, I / precision)."""
    eye = torch.eye(d, dtype=torch.float64)
    return MultivariateNormal(torch.zeros(d, dtype=torch.float64), covariance_matrix=eye / precision)


@pytest.mark.parametrize("rank", [1, 4])  # torch's low-rank Gaussian needs a factor; rank 0 is the mean-field test
def test_the_closed_form_kl_is_torchs_low_rank_gaussian_kl(rank):
    mu, var, factors = posterior((5, 7), rank)
    lam = 0.01
    q = LowRankMultivariateNormal(mu.reshape(-1), factors.reshape(rank, -1).T, var.reshape(-1))
    p = MultivariateNormal(
        torch.zeros(35, dtype=torch.float64), covariance_matrix=torch.eye(35, dtype=torch.float64) / lam
    )
    assert torch.allclose(kl_to_prior(mu, var, factors, lam), kl_divergence(q, p), rtol=1e-10)


def test_the_closed_form_kl_agrees_with_a_monte_carlo_estimate():
    mu, var, factors = posterior((4, 6), 4, seed=1)
    lam = 1.0
    q = LowRankMultivariateNormal(mu.reshape(-1), factors.reshape(4, -1).T, var.reshape(-1))
    p = MultivariateNormal(
        torch.zeros(24, dtype=torch.float64), covariance_matrix=torch.eye(24, dtype=torch.float64) / lam
    )
    torch.manual_seed(0)
    w = q.sample((200_000,))
    terms = q.log_prob(w) - p.log_prob(w)
    error = 4 * terms.std() / math.sqrt(len(terms))
    assert abs(float(terms.mean() - kl_to_prior(mu, var, factors, lam))) < float(error)


def test_rank_zero_is_the_mean_field_posterior():
    mu, var, _ = posterior((3, 8), 0, seed=2)
    lam = 0.01
    mean_field = 0.5 * (lam * (var + mu * mu) - 1 - math.log(lam) - torch.log(var)).sum()
    assert torch.allclose(kl_to_prior(mu, var, torch.zeros((0, 3, 8), dtype=torch.float64), lam), mean_field)


def moments(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = samples.reshape(samples.shape[0], -1)
    return flat.mean(0), torch.cov(flat.T)


@pytest.mark.parametrize(
    "shape, x_shape, apply",
    [
        ((3, 5), (5,), lambda x, w: F.linear(x, w)),
        ((2, 3, 3, 3), (3, 4, 4), lambda x, w: F.conv2d(x, w, padding=1)),
    ],
)
def test_local_reparameterisation_has_the_moments_of_sampled_weights(shape, x_shape, apply):
    """One input, many draws: the output's mean and full covariance (the low-rank part couples the outputs) are
    those of the layer applied to weights sampled from q."""
    mu, var, factors = posterior(shape, 4, seed=3)
    x = torch.randn(x_shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    n = 100_000
    g = torch.Generator().manual_seed(5)
    lrt = sample_output(x.expand(n, *x_shape), mu, var, factors, apply, generator=g)
    q = LowRankMultivariateNormal(mu.reshape(-1), factors.reshape(4, -1).T, var.reshape(-1))
    torch.manual_seed(6)
    weights = q.sample((2_000,)).reshape(2_000, *shape)
    direct = torch.stack([apply(x[None], w)[0] for w in weights])
    exact_mean = apply(x[None], mu)[0].reshape(-1)
    (m_lrt, c_lrt), (_, c_direct) = moments(lrt), moments(direct)
    scale = c_direct.diag().sqrt()
    assert torch.allclose(m_lrt, exact_mean, atol=float(4 * scale.max() / math.sqrt(n)))
    assert torch.allclose(c_lrt, c_direct, atol=float(0.15 * scale.max() ** 2)), (c_lrt - c_direct).abs().max()


def test_fixed_entries_carry_no_variance_and_no_kl():
    """A W-Asym layer's fixed entries (mask 0): the output is deterministic where only they act, and the KL is that
    of the trainable entries alone."""
    mu, var, factors = posterior((4, 6), 4, seed=7)
    mask = torch.ones(4, 6, dtype=torch.float64)
    mask[:, :3] = 0  # the first three inputs reach every output through fixed entries only
    x = torch.zeros(1000, 6, dtype=torch.float64)
    x[:, :3] = torch.randn(3, dtype=torch.float64)
    out = sample_output(x, mu, var, factors, lambda a, w: F.linear(a, w), mask=mask)
    # no variance through fixed entries: what is left is the floor's standard deviation of 1e-8 (MIN_VARIANCE)
    assert (out - F.linear(x, mu)).abs().max() < 1e-7
    trainable = kl_to_prior(mu[:, 3:], var[:, 3:], factors[:, :, 3:], 0.01)
    assert torch.allclose(kl_to_prior(mu, var, factors, 0.01, mask=mask), trainable)


def bayesian_mlp(variant: str, digits, seed: int = 0):
    from symzoo.zoo.bayes import Posterior
    from symzoo.zoo.models import build

    torch.manual_seed(seed)
    model = build("mlp", variant, digits.in_shape, digits.num_classes, init_seed=seed, hidden=32).double()
    return model, Posterior(model, rank=4, init_log_var=-10.0, prior_precision=0.01).double()


def digits_batch(digits, n: int = 256):
    x = digits.normalize(digits.x_train[:n]).double()
    return x, digits.y_train[:n]


def test_a_posterior_without_variance_is_the_network_itself(digits):
    model, posterior = bayesian_mlp("w_asym", digits)
    x, _ = digits_batch(digits)
    posterior.sampling = False
    plain = model(x)
    posterior.sampling = True
    with torch.no_grad():
        for p in posterior.layers.values():
            p.factors.zero_()
            p.bias_factors.zero_()
            p.log_var.fill_(-200.0)
            p.log_var_b.fill_(-200.0)
    # what remains is the variance floor (MIN_VARIANCE: a standard deviation of 1e-8 per output, through LayerNorms)
    assert torch.allclose(model(x), plain, atol=1e-6)


def test_variational_training_lowers_the_negative_elbo_and_keeps_fixed_entries_fixed(digits):
    """A few Adam steps on NLL + KL / N: the objective falls; a W-Asym network's fixed entries are still the zoo's
    constants, its masked weight entries still zero, and they carry no variance."""
    model, posterior = bayesian_mlp("w_asym", digits)
    fixed = {
        n: m.weight_fixed.clone() for n, m in model.named_modules() if getattr(m, "weight_fixed", None) is not None
    }
    x, y = digits_batch(digits)
    opt = torch.optim.Adam([*model.parameters(), *posterior.parameters()], lr=5e-3)

    def terms() -> tuple[torch.Tensor, torch.Tensor]:
        nll = F.cross_entropy(model(x), y)
        return nll, nll + posterior.kl() / len(digits.x_train)

    torch.manual_seed(1)
    with torch.no_grad():
        nll_before, before = (torch.stack(t).mean() for t in zip(*[terms() for _ in range(20)], strict=True))
    for _ in range(60):
        opt.zero_grad()
        terms()[1].backward()
        opt.step()
    with torch.no_grad():
        nll_after, after = (torch.stack(t).mean() for t in zip(*[terms() for _ in range(20)], strict=True))
    # the KL of a fixed diagonal is mostly a constant (as in the authors' runs): the data term carries the fall
    assert after < before and nll_after < 0.7 * nll_before, (float(nll_before), float(nll_after))
    for name, module in model.named_modules():
        if name in fixed:
            assert torch.equal(module.weight_fixed, fixed[name])
            off = ~module.weight_mask.bool()
            assert torch.all(module.weight[off] == 0)
            p = posterior.layers[name.replace(".", "/")]
            assert torch.all(p.factors[:, off] == 0), "fixed entries carry no variance"
