"""The zoo recipe for K networks of one architecture and variant at once: one computation over stacked parameters.

The forward pass is the model itself, called (``functional_call``) with parameters stacked to ``(K, ...)`` on
activations that hold the K networks side by side along channels, ``(B, K*C, H, W)``: the layers of
``zoo.layers`` turn that into grouped convolutions and per-network norms. (``torch.func.vmap`` gives the same
result, but its layout changes around every layer made it about 3x slower per network; bench/RESULTS.md.)
Each network sees its own batch (own data order and augmentation draws from its own generator, via
``draw_epoch``), its own learning-rate schedule, label smoothing and weight decay, and its own AdamW moments.
The AdamW update below is
torch's single-tensor AdamW with per-network scalars, operation for operation, so packed training matches
``zoo.train.train_network`` up to the reduction order of batched kernels.

Networks leave the pack when their epochs are done or their loss goes non-finite (a compiled pack keeps some as
passengers at learning rate 0, see ``rows_to_keep``); a diverged network never touches the others (each
network's loss depends only on its own slice of the stacked parameters).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.func import functional_call

from symzoo.zoo.augment import draw_epoch, packed_batch, stack_draws
from symzoo.zoo.data import Dataset
from symzoo.zoo.layers import seeded_generator
from symzoo.zoo.layout import ParamLayout
from symzoo.zoo.plan import HParams, NetSpec
from symzoo.zoo.train import (
    Recipe,
    TrainResult,
    autocast,
    evaluate,
    lr_factor,
    smoothed_cross_entropy,
    steps_per_epoch,
    tune_kernels,
)

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # torch.optim.AdamW defaults


class PackedAdamW:
    """torch's AdamW (single-tensor form), vectorised over the leading network dimension."""

    def __init__(self, params: dict[str, torch.Tensor]):
        self.exp_avg = {n: torch.zeros_like(p) for n, p in params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in params.items()}
        self.steps = 0

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], lr: torch.Tensor, weight_decay: torch.Tensor) -> None:
        """``lr`` and ``weight_decay`` are float64 ``(K,)``: scalars are formed in double, as torch does."""
        self.steps += 1
        bias_correction1 = 1 - BETA1**self.steps
        bias_correction2_sqrt = (1 - BETA2**self.steps) ** 0.5
        first = next(iter(params.values()))
        # per-network scalars formed in double, then cast to the parameters' dtype as torch casts Python floats
        decay = (1 - lr * weight_decay).to(first.device, first.dtype)
        neg_step_size = (-(lr / bias_correction1)).to(first.device, first.dtype)
        for name, p in params.items():
            grad = p.grad
            shape = (-1,) + (1,) * (p.dim() - 1)
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            p.mul_(decay.view(shape))
            m.lerp_(grad, 1 - BETA1)
            v.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)
            denom = (v.sqrt() / bias_correction2_sqrt).add_(EPS)
            p.add_(m * neg_step_size.view(shape) / denom)

    def keep(self, index: torch.Tensor) -> None:
        self.exp_avg = {n: t[index] for n, t in self.exp_avg.items()}
        self.exp_avg_sq = {n: t[index] for n, t in self.exp_avg_sq.items()}


def packed_logits(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    buffers: dict[str, torch.Tensor],
    x: torch.Tensor,
    channels_last: bool = False,
) -> torch.Tensor:
    """Logits ``(K, B, classes)`` of K networks with stacked ``params``, each on its own batch ``x[k]``."""
    k, b = x.shape[:2]
    side_by_side = x.transpose(0, 1).reshape(b, k * x.shape[2], *x.shape[3:])
    if channels_last and side_by_side.dim() == 4:
        side_by_side = side_by_side.contiguous(memory_format=torch.channels_last)
    return functional_call(model, (params, buffers), (side_by_side,)).view(b, k, -1).transpose(0, 1)


def pack_buffers(models: list[nn.Module], repeats: int = 1) -> tuple[dict[str, torch.Tensor], frozenset[str]]:
    """The fixed structure a packed forward over ``models`` uses, and which of it is per network.

    A buffer every model shares (W-Asym masks and values, a zoo-wide F) is passed once; FiGLU gates drawn per
    network (``model.gates: network``) are stacked ``(K * repeats, C, C)``, each repeated for its ``repeats``
    consecutive pack rows (the points of one network's line in MLI)."""
    named = [dict(m.named_buffers()) for m in models]
    buffers, per_network = {}, set()
    for name, first in named[0].items():
        if all(torch.equal(first, other[name]) for other in named[1:]):
            buffers[name] = first
        else:
            buffers[name] = torch.stack([other[name] for other in named]).repeat_interleave(repeats, 0)
            per_network.add(name)
    return buffers, frozenset(per_network)


def buffers_of_rows(
    buffers: dict[str, torch.Tensor], per_network: frozenset[str], rows: torch.Tensor | list[int]
) -> dict[str, torch.Tensor]:
    """The pack's buffers for a subset of its rows: shared ones as they are, per-network ones indexed."""
    return {n: t[rows] if n in per_network else t for n, t in buffers.items()}


def group_into_packs(specs: list[NetSpec], pack_size: int) -> list[list[NetSpec]]:
    """Packs of up to ``pack_size`` consecutive networks of one variant (a pack shares its masks; per-network F
    are stacked by ``pack_buffers``).

    A pack runs as long as its longest network: callers pass networks ordered by length, as the zoo's shards
    are (``pipelines.shard.shard_specs``), so that packs stay full to the end.
    """
    groups = []
    for variant in dict.fromkeys(s.variant for s in specs):
        same = [s for s in specs if s.variant == variant]
        groups += [same[i : i + pack_size] for i in range(0, len(same), pack_size)]
    return groups


MIN_COMPILED_PACK = 8  # smaller packs run eager: a graph costs more to build than it saves on a few networks
# Graphs one process may build for the packed forward: one per architecture, variant and pack size. torch's
# default (8 per function) is below what a long-running GPU worker needs (3 variants x sizes 64, 32, 16, 8 is
# 12), and past it torch silently trains every further pack eager, 1.65x slower on an H100.
MAX_COMPILED_GRAPHS = 64


def compile_packed(forward: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``torch.compile`` of the packed forward, one graph per pack size (``dynamic=False``), allowed up to
    ``MAX_COMPILED_GRAPHS`` graphs in this process."""
    import torch._dynamo  # imported here: it adds a second to importing the zoo

    compiled = torch.compile(forward, dynamic=False)

    def run(*args: torch.Tensor | dict) -> torch.Tensor:
        with torch._dynamo.config.patch(recompile_limit=MAX_COMPILED_GRAPHS):
            return compiled(*args)

    return run


def rows_to_keep(live: list[bool], fixed_sizes: bool) -> list[int]:
    """The pack rows that go on training once some networks have finished: the live ones, in order.

    With ``fixed_sizes`` (compiled packs: torch.compile specialises on the pack size, and a graph takes tens of
    seconds to build) the pack shrinks only to the next power of two at or above the live count, keeping
    finished rows as passengers with learning rate 0, so a process builds one graph per power of two, not one
    per count of live networks. Below ``MIN_COMPILED_PACK`` the pack runs eager and keeps only live rows.
    """
    live_rows = [r for r, on in enumerate(live) if on]
    if not fixed_sizes or not live_rows:
        return live_rows
    size = 1 << (len(live_rows) - 1).bit_length()  # next power of two >= live count
    if size < MIN_COMPILED_PACK:
        return live_rows
    if size >= len(live):
        return list(range(len(live)))
    passengers = [r for r, on in enumerate(live) if not on][: size - len(live_rows)]
    return sorted(live_rows + passengers)


def stack_parameters(models: list[nn.Module]) -> dict[str, torch.Tensor]:
    names = [n for n, _ in models[0].named_parameters()]
    return {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_() for n in names}


def train_pack(
    models: list[nn.Module],
    data: Dataset,
    hparams: list[HParams],
    seeds: list[int],
    recipe: Recipe,
    checkpoint_epochs: Iterable[int] = (),
    evaluate_final: bool = True,
    fixed_sizes: bool | None = None,
) -> list[TrainResult]:
    """Train same-architecture, same-variant ``models`` together; returns one result per model, in order.

    The models' masks must be identical, as they are for one zoo and variant; FiGLU gates may differ per network.
    ``fixed_sizes`` (default: when compiled) keeps the pack at power-of-two sizes as networks finish; see
    ``rows_to_keep``.
    """
    if recipe.optimizer != "adamw":
        raise ValueError(f"packed training implements adamw, not {recipe.optimizer!r}; use pack_size 1")
    start = time.perf_counter()
    device = data.x_train.device
    tune_kernels(device)
    template = models[0]
    layout = ParamLayout.from_model(template)
    buffers, per_network = pack_buffers(models)
    k_all = len(models)
    params = stack_parameters(models)
    optimizer = PackedAdamW(params)
    generators = [seeded_generator("symzoo-data", s) for s in seeds]
    steps = steps_per_epoch(len(data.x_train), recipe.batch_size)
    epochs = torch.tensor([hp.epochs for hp in hparams])
    peak_lr = torch.tensor([hp.lr for hp in hparams], dtype=torch.float64)
    weight_decay = torch.tensor([hp.weight_decay for hp in hparams], dtype=torch.float64, device=device)
    smoothing = torch.tensor([hp.label_smoothing for hp in hparams], device=device)
    warmup = round(recipe.warmup_epochs * steps)
    keep_epochs = set(checkpoint_epochs)
    history = [{"train_loss": [], "train_acc": []} for _ in range(k_all)]
    checkpoints: list[dict[int, torch.Tensor]] = [{} for _ in range(k_all)]
    results: list[TrainResult | None] = [None] * k_all
    active = list(range(k_all))  # original index of each pack row
    live = [True] * k_all  # rows still training; a compiled pack keeps finished rows as passengers (lr 0)

    def packed_forward(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return packed_logits(template, p, b, x, recipe.channels_last)

    # the training forward may be compiled (a graph per pack size: see rows_to_keep); evaluation stays eager
    compiled_forward = compile_packed(packed_forward) if recipe.compile else packed_forward

    def finish(ended: list[tuple[int, str, str]], epoch: int) -> None:
        """Evaluate the pack rows that ended this epoch and record their results."""
        rows = [r for r, _, _ in ended]
        ok_rows = [r for r, s, _ in ended if s == "ok" and evaluate_final]
        metrics: dict[int, list[float]] = {}
        if ok_rows:
            sub = {n: p.detach()[ok_rows] for n, p in params.items()}
            sub_buffers = buffers_of_rows(buffers, per_network, ok_rows)
            n_ok = len(ok_rows)

            def fwd(x: torch.Tensor) -> torch.Tensor:  # every network sees the batch
                return packed_forward(sub, sub_buffers, x.unsqueeze(0).expand(n_ok, *x.shape))

            batch = max(64, recipe.eval_batch_size // n_ok)
            tr = evaluate(fwd, data, data.x_train, data.y_train, batch, recipe.amp)
            te = evaluate(fwd, data, data.x_test, data.y_test, batch, recipe.amp)
            for j, r in enumerate(ok_rows):
                metrics[r] = [float(tr[0][j]), float(tr[1][j]), float(te[0][j]), float(te[1][j])]
        flat = layout.flatten({n: p.detach()[rows] for n, p in params.items()}).cpu()
        for j, (r, s, why) in enumerate(ended):
            k = active[r]
            results[k] = TrainResult(
                s,
                why,
                epoch,
                *metrics.get(r, [float("nan")] * 4),
                history=history[k],
                seconds=0.0,
                final_weights=flat[j].clone(),
                checkpoints=checkpoints[k],
            )

    for epoch in range(1, int(epochs.max()) + 1):
        if not any(live):
            break
        draws = [
            draw_epoch(generators[k], len(data.x_train), recipe.batch_size, data.in_shape[1:], recipe.augment)
            for k in active
        ]
        stacked = stack_draws(draws, device)  # every field (K, steps, B)
        # the epoch's learning rates (steps, K), made once: a host-to-device copy per step would stall the GPU
        totals = [int(t) for t in epochs[active] * steps]
        first = (epoch - 1) * steps
        factors = [[lr_factor(first + i, t, warmup, recipe.schedule) for t in totals] for i in range(steps)]
        on = torch.tensor(live, dtype=torch.float64)
        lrs = (torch.tensor(factors, dtype=torch.float64) * peak_lr[active] * on).to(device)
        wd, ls = weight_decay[active], smoothing[active]
        k = len(active)
        train_forward = compiled_forward if k >= MIN_COMPILED_PACK else packed_forward
        loss_sum = torch.zeros(k, device=device)
        correct = torch.zeros(k, device=device)
        for i in range(steps):
            x, y = packed_batch(data.x_train, data.y_train, data.normalize, stacked, i, recipe.augment)
            with autocast(device, recipe.amp):
                logits = train_forward(params, buffers, x)
            losses = smoothed_cross_entropy(logits, y, ls)
            losses.sum().backward()
            optimizer.step(params, lrs[i], wd)
            for p in params.values():
                p.grad = None
            loss_sum += losses.detach()
            correct += (logits.detach().argmax(-1) == y).sum(-1)
        mean_loss = (loss_sum / steps).cpu()
        acc = (correct / (steps * recipe.batch_size)).cpu()
        ended: list[tuple[int, str, str]] = []  # (pack row, status, reason)
        for r, kk in enumerate(active):
            if not live[r]:
                continue
            history[kk]["train_loss"].append(float(mean_loss[r]))
            history[kk]["train_acc"].append(float(acc[r]))
            if not torch.isfinite(mean_loss[r]):
                ended.append((r, "diverged", f"non-finite training loss in epoch {epoch}"))
                continue
            if epoch in keep_epochs:
                checkpoints[kk][epoch] = layout.flatten({n: p.detach()[r] for n, p in params.items()}).cpu()
            if epoch == int(epochs[kk]):
                ended.append((r, "ok", ""))
        if ended:
            finish(ended, epoch)
            for r, _, _ in ended:
                live[r] = False
            keep = rows_to_keep(live, fixed_sizes=recipe.compile if fixed_sizes is None else fixed_sizes)
            if len(keep) < len(active):
                index = torch.tensor(keep, dtype=torch.long, device=device)
                params = {n: p.detach()[index].requires_grad_() for n, p in params.items()}
                buffers = buffers_of_rows(buffers, per_network, index)
                optimizer.keep(index)
                active, live = [active[r] for r in keep], [live[r] for r in keep]
    seconds = (time.perf_counter() - start) / k_all
    for r in results:
        r.seconds = seconds
    return results  # type: ignore[return-value]
