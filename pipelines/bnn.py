"""``symzoo bnn``: the paper's Bayesian-network comparison (Table 2, Figure 4; docs/paper.md §6) on a stored
Bayesian zoo (``training.method: elrg``).

Table 2's columns come from each network's stored history, so the stage evaluates nothing and needs no Ray: it
reads the zoo's frame, writes ``networks.parquet`` (one row per network), ``curves.parquet`` (Figure 4's data),
``table.md`` and ``figures/training_loss.png``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from symzoo.analysis import bnn
from symzoo.analysis.paper import table2_row
from symzoo.analysis.plots import plot_training_loss
from symzoo.analysis.verdicts import verdict_frame
from symzoo.errors import ZooError
from symzoo.pipelines.outputs import write_parquet
from symzoo.pipelines.stage_spec import StageOptions, StageResult, StageSpec, check_resources
from symzoo.zoo.fields import check_int
from symzoo.zoo.location import Location, atomic_write_bytes
from symzoo.zoo.models import describe_fixed_structure
from symzoo.zoo.store import Zoo


@dataclass(frozen=True)
class BnnOptions(StageOptions):
    epoch: int | None = None  # the epoch Table 2 reads; None: the zoo's last
    half_epoch: int | None = None  # the epoch of the second accuracy column (the paper's 25 of 50); None: half


IDENTITY = ("epoch", "half_epoch")


def check_options(o: dict) -> None:
    check_int("bnn.epoch", o["epoch"], 1, allow_none=True)
    check_int("bnn.half_epoch", o["half_epoch"], 1, allow_none=True)
    check_resources("bnn", o)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epoch", type=int, default=None, help="the epoch the table reads (default: the last)")
    parser.add_argument("--half-epoch", type=int, default=None, help="epoch of the second accuracy column")


def overrides_from(args: argparse.Namespace) -> dict:
    return {"epoch": args.epoch, "half_epoch": args.half_epoch}


def needs(cfg: dict) -> str | None:
    if cfg["training"].get("method", "standard") != "elrg":
        return "its networks are not Bayesian (set training.method: elrg)"
    return None


def model_name(cfg: dict) -> str:
    m = cfg["model"]
    if m["arch"] == "bnn_mlp":
        return f"MLP-{m.get('depth') or 8}" + (f" ({m['hidden']} units)" if m.get("hidden") else "")
    return {"resnet8": "ResNet8", "resnet20": "ResNet20", "resnet110": "ResNet110", "mlp": "MLP"}[m["arch"]] + (
        f" x{m['width']}" if m["width"] > 1 else ""
    )


def epochs_read(zoo: Zoo, opts: BnnOptions) -> tuple[int, int]:
    """The table's epoch and half epoch; an epoch no network was planned to reach is refused."""
    epochs = zoo.config["hyperparameters"]["epochs"]
    longest = epochs if isinstance(epochs, int) else epochs["randint"][1]
    epoch = opts.epoch or longest
    if epoch > longest:
        raise ZooError(f"--epoch {epoch} is after the zoo's last epoch ({longest}); pass at most {longest}")
    return epoch, opts.half_epoch or max(1, epoch // 2)


def bnn_stage(
    zoo_dir, out, config_section=None, overrides=None, address=None, show_progress: bool = True
) -> StageResult:
    from symzoo.pipelines.analysis_stage import AnalysisStage

    stage = AnalysisStage.open(SPEC, zoo_dir, out, config_section, overrides)
    zoo = stage.zoo
    if reason := needs(zoo.config):
        raise ZooError(f"{zoo.path} cannot have the bnn stage: {reason}")
    if done := stage.finished():
        return done
    epoch, half = epochs_read(zoo, stage.opts)
    with stage.running(address, uses_ray=False):
        print(
            f"symzoo: bnn: Table 2 of {len(zoo.frame)} networks of {zoo.config['name']} -> {stage.out}", file=sys.stderr
        )
        return stage.finish(write_bnn_outputs(stage.out, zoo, epoch, half))


def write_bnn_outputs(out: Location, zoo: Zoo, epoch: int, half: int) -> str:
    frame = zoo.frame
    networks = bnn.per_network(frame, epoch, half)
    curves = bnn.loss_curves(frame)
    write_parquet(out / "networks.parquet", networks)
    write_parquet(out / "curves.parquet", curves)
    cfg, paper_row = zoo.config, table2_row(zoo.config)
    variants = [v for v in cfg["variants"] if v in set(networks["variant"])]
    elrg = cfg["training"]["elrg"]
    failed = int((networks["status"] != "ok").sum())
    notes = [
        f"zoo {cfg['name']} ({model_name(cfg)} on {cfg['data']['name']}, {len(networks)} networks, "
        f"{failed} diverged or failed); mean ± std over instances; bold: better than the pair's other row by more "
        "than a standard deviation (the paper's rule)",
        f"posterior: diagonal + rank-{elrg['rank']} Gaussian, initial log-variance {elrg['init_log_var']:g} "
        f"({'learned' if elrg['learn_diag'] else 'fixed'}), prior precision {elrg['prior_precision']:g}"
        f"{' x layer width' if elrg['scale_prior'] else ''}, KL / (training images x {elrg['kl_copies']}); test "
        f"metrics from {elrg['test_samples']} posterior samples on {len(zoo.dataset().y_test)} test images; "
        "train loss = the epoch's mean NLL of sampled networks on augmented batches",
        describe_fixed_structure(cfg),
        bnn.chance_note(networks, zoo.manifest["num_classes"]),
        "paper rows: 10 instances on CIFAR-10, 50 epochs, the second accuracy after 25 (Lim et al. 2024, Table 2)"
        if paper_row
        else "the paper has no row for this model and data; compare directions only",
    ]
    verdicts = bnn.verdicts(networks, paper_row, model_name(cfg))
    write_parquet(out / "verdicts.parquet", verdict_frame(verdicts))
    parts = [
        "# Bayesian networks (paper Table 2)",
        "",
        bnn.table2(networks, variants, model_name(cfg), paper_row, epoch, half),
        "",
        *(f"- {n}" for n in notes),
    ]
    if verdicts:
        parts += ["", *(f"- verdict: {v.text}" for v in verdicts)]
    table = "\n".join(parts) + "\n"
    atomic_write_bytes(out / "table.md", table.encode())
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    plot_training_loss(curves, figures / "training_loss.png", f"{model_name(cfg)}: training loss (Figure 4)")
    return table


SPEC = StageSpec(
    name="bnn",
    title="Bayesian networks (paper Table 2, Figure 4)",
    help="Table 2 and Figure 4 from a Bayesian zoo's stored history (training.method: elrg)",
    item="network",
    options=BnnOptions,
    check=check_options,
    identity=IDENTITY,
    seed_options=(),
    run=bnn_stage,
    add_arguments=add_arguments,
    overrides=overrides_from,
    needs=needs,
)
