"""The ``symzoo`` command: parses arguments and calls the library; no logic of its own.

Expected problems (bad config, missing data, wrong zoo path, corrupt shard) end with one line on stderr and
exit code 2; nothing is written before the inputs are validated.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable

from symzoo.errors import SymzooError


def cmd_train_one(args: argparse.Namespace) -> None:
    import torch

    from symzoo.zoo.augment import AugmentConfig
    from symzoo.zoo.data import load_dataset
    from symzoo.zoo.models import build
    from symzoo.zoo.plan import HParams
    from symzoo.zoo.train import Recipe, train_network

    torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data = load_dataset(args.dataset, size=args.size, train_per_class=args.train_per_class).to(device)
    model = build(args.arch, args.variant, data.in_shape, data.num_classes, init_seed=args.seed).to(device)
    small = data.in_shape[-1] < 16
    recipe = Recipe(
        batch_size=args.batch_size,
        augment=AugmentConfig(flip=not small and args.dataset == "cifar10", cutout=0 if small else 4),
    )
    hp = HParams(args.lr, args.weight_decay, args.label_smoothing, args.epochs)
    print(
        f"training {args.arch}/{args.variant} on {args.dataset} {tuple(data.x_train.shape)} on {device}",
        file=sys.stderr,
    )
    result = train_network(model, data, hp, recipe, seed=args.seed)
    summary = {
        k: getattr(result, k)
        for k in ("status", "reason", "epochs_done", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")
    }
    print(json.dumps(summary, indent=1))


def cmd_generate(args: argparse.Namespace) -> None:
    from symzoo.pipelines.generate import generate

    report = generate(args.config, args.out, args.address, show_progress=not args.no_progress)
    exit_if_shards_failed(report, "rerun the same command to retry them")


def exit_if_shards_failed(report, fix: str) -> None:
    """One line naming the first failed shard and why, with ``fix``, and a non-zero exit; nothing when all passed."""
    if not report.ok:
        first = next(iter(report.failed.items()))
        raise SystemExit(f"symzoo: error: {len(report.failed)} shard(s) failed (shard {first[0]}: {first[1]}); {fix}")


def cmd_import(args: argparse.Namespace) -> None:
    from symzoo.pipelines.importing import import_zoo

    report = import_zoo(
        args.format,
        args.source,
        args.out,
        args.data,
        args.data_root,
        args.hparams,
        args.address,
        not args.no_progress,
        activation=args.activation,
        data_size=args.data_size,
        arch=args.arch,
        checkpoint_every=args.checkpoint_every,
        networks_per_shard=args.networks_per_shard,
    )
    exit_if_shards_failed(report, "fix the file it names and rerun the same command")


def cmd_export(args: argparse.Namespace) -> None:
    from symzoo.pipelines.exporting import export_zoo

    print(f"symzoo: wrote {export_zoo(args.zoo, args.format, args.out)}", file=sys.stderr)


def cmd_plan(args: argparse.Namespace) -> None:
    from symzoo.pipelines.generate import describe_plan

    print(describe_plan(args.config, args.out))


def cmd_info(args: argparse.Namespace) -> None:
    from pathlib import PurePosixPath

    from symzoo.zoo.info import describe
    from symzoo.zoo.location import location
    from symzoo.zoo.store import open_zoo

    if args.plot is not None:  # before anything is printed
        plot = location(args.plot)
        if plot.is_dir():
            raise SymzooError(f"--plot {args.plot} is a folder; name a file in it, e.g. {plot / 'accuracy.png'}")
        if PurePosixPath(plot.name).suffix.lower() != ".png":
            raise SymzooError(f"--plot {args.plot} is not a .png file name; the figure is a PNG, e.g. accuracy.png")
    zoo = open_zoo(args.zoo, verify=False)
    zoo.verify(checksums=args.verify)  # footers always, sha256 too with --verify
    print(describe(zoo, checksums_verified=args.verify))
    if args.plot is not None:
        from symzoo.analysis.plots import plot_accuracy

        print(f"plot written to {plot_accuracy(zoo.frame, args.plot, zoo.config['name'])}")


def cmd_verify(args: argparse.Namespace) -> None:
    """``symzoo verify ZOO``: ``info --verify`` without the tables, for scripts and for users who look for it."""
    from symzoo.zoo.store import open_zoo

    zoo = open_zoo(args.zoo, verify=False)
    zoo.verify(checksums=True)
    state = "complete" if zoo.complete else "INCOMPLETE"
    print(
        f"{zoo.path}: {len(zoo.shards)} shards and {len(zoo.frame)} networks verified (footers, sha256 against the "
        f"manifest, every row the planned network); the zoo is {state}"
    )


def cmd_splits(args: argparse.Namespace) -> None:
    from symzoo.zoo.split_files import store_splits
    from symzoo.zoo.store import open_zoo

    splits = store_splits(args.zoo, args.seed, args.from_file, args.replace)
    frame = open_zoo(args.zoo, verify=False).frame.merge(splits, on="model_id")
    counts = frame.groupby(["variant", "split"]).size().unstack(fill_value=0)
    print(f"{args.zoo}/splits.parquet: networks per variant and split\n{counts.to_string()}")


def cmd_card(args: argparse.Namespace) -> None:
    from symzoo.zoo.card import write_card

    print(f"dataset card written to {write_card(args.zoo)}")


def number_in(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number in [low, high] (or (low, high] with ``low_open``): nan, inf and a negative
    learning rate would otherwise train, or fail deep inside torch."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value > low if low_open else value >= low) and value <= high):
            bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; a finite number in {bounds}")
        return value

    return parse


def int_in(low: int, high: int) -> Callable[[str], int]:
    """argparse type: a whole number in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; a whole number in [{low}, {high}]")
        return value

    return parse


def device_name(text: str) -> str:
    """argparse type: a torch device this machine has (cpu, cuda, cuda:N)."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; cpu, cuda or cuda:N") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has no such CUDA device; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; cpu, cuda or cuda:N")
    return text


def out_path(text: str) -> str:
    """argparse type of --out: a path (an empty one would silently mean the default)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; pass a directory, or leave --out out for the default")
    return text


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (a batch of 0 divides by zero, 0 epochs trains nothing)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; a whole number >= 1")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (the usage is one ``-h`` away), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} -h\n")


def cmd_analysis(args: argparse.Namespace) -> None:
    """symzoo STAGE ZOO: one registered analysis stage on a stored zoo."""
    from symzoo.pipelines.registry import load_stage_section, stage
    from symzoo.zoo.location import location

    spec = stage(args.command)
    out = args.out or f"runs/{location(args.zoo).name}-{spec.name}"
    section = load_stage_section(args.config, spec.name) if args.config else None
    result = spec.run(args.zoo, out, section, spec.overrides(args), args.address, not args.no_progress)
    print(result.table)
    print(f"table, {spec.name} outputs and figures in {result.out}")


def cmd_run(args: argparse.Namespace) -> None:
    from symzoo.pipelines.registry import load_study_config
    from symzoo.pipelines.run import run_study

    out = args.out or f"runs/{load_study_config(args.config)['name']}"
    report = run_study(args.config, out, args.address, not args.no_progress)
    print_headlines(out)
    print(f"study complete; open {report} (or read {report.with_suffix('.md')})")
    if "://" in str(report):
        copy = "aws s3 cp" if str(report).startswith("s3://") else "gcloud storage cp"
        print(f"the report is self-contained: `{copy} {report} .` and open the copy")


def print_headlines(out) -> None:
    """The study's verdicts and warnings, as its report's summary lists them."""
    from symzoo.pipelines.report import headlines
    from symzoo.zoo.location import location

    out = location(out)
    stages = json.loads((out / "study.json").read_text())["stages"]
    found = headlines(out, stages)
    if found:
        print("headlines:\n" + "\n".join(f"  {h}" for h in found))


def cmd_report(args: argparse.Namespace) -> None:
    from symzoo.pipelines.run import write_study_report

    print(f"report written: {write_study_report(args.study)}")


def cmd_submit(args: argparse.Namespace) -> None:
    from symzoo.cluster.submit import submit

    _, final = submit(args.stage, build_parser().parse_args, args.address, args.cluster, args.wait)
    if final is not None and final != "SUCCEEDED":
        raise SymzooError(f"the job ended {final}; its log is above; `symzoo submit` the same again resumes it")


def _analysis_arguments(parser: argparse.ArgumentParser, stage: str) -> None:
    """What every analysis stage takes besides its own options."""
    parser.add_argument("zoo", help="zoo directory written by `symzoo generate`")
    parser.add_argument("--out", type=out_path, default=None, help=f"output directory (default: runs/<zoo>-{stage})")
    parser.add_argument("--config", default=None, help=f"a zoo config whose {stage}: section sets the options")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local one)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=cmd_analysis)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="symzoo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    one = sub.add_parser("train-one", help="train and evaluate one network with the zoo recipe")
    one.add_argument("--dataset", default="digits", choices=["digits", "cifar10", "fashion_mnist"])
    one.add_argument("--arch", default="resnet8", choices=["resnet8", "resnet20", "mlp"])
    one.add_argument("--variant", default="standard", choices=["standard", "w_asym", "sigma_asym"])
    one.add_argument("--size", type=int_in(4, 256), default=None, help="downsample images to SIZE x SIZE (4-256)")
    one.add_argument("--train-per-class", type=positive_int, default=None)
    one.add_argument("--epochs", type=positive_int, default=10)
    one.add_argument("--lr", type=number_in(0, 10, low_open=True), default=0.01)
    one.add_argument("--weight-decay", type=number_in(0, 10), default=5e-4)
    one.add_argument("--label-smoothing", type=number_in(0, 0.999), default=0.1)
    one.add_argument("--batch-size", type=positive_int, default=512)
    one.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0)
    one.add_argument("--threads", type=positive_int, default=2)
    one.add_argument("--device", type=device_name, default=None, help="cpu, cuda or cuda:N (default: cuda if any)")
    one.set_defaults(func=cmd_train_one)

    gen = sub.add_parser("generate", help="train a zoo from a YAML config on Ray (resumes where it stopped)")
    gen.add_argument("config", help="zoo config, e.g. configs/digits_demo.yaml")
    gen.add_argument("--out", type=out_path, default=None, help="zoo directory (default: zoos/<config name>)")
    gen.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local cluster)")
    gen.add_argument("--no-progress", action="store_true", help="no progress bar")
    gen.set_defaults(func=cmd_generate)

    im = sub.add_parser("import", help="another project's zoo as a symzoo zoo (resumes where it stopped)")
    im.add_argument(
        "format",
        choices=["authors", "small-cnn-zoo", "dwsnets", "ray-tune"],  # zoo.formats.FORMATS (it would load torch)
        help="authors: the paper's own zoo (resnet8/, sparse_resnet8/); small-cnn-zoo: one data set of Unterthiner "
        "et al.'s Small CNN Zoo (weights.npy, metrics.csv, layout.csv); dwsnets: an INR zoo as DWSNets' splits JSON "
        "names it (a .pth state dict per INR); ray-tune: Ray Tune trial folders (params.json, result.json, "
        "checkpoint_<E>/checkpoints), as the ModelZoos store them",
    )
    im.add_argument("source", help="the folder holding the zoo as its project stores it (dwsnets: or the JSON)")
    im.add_argument("--out", type=out_path, required=True, help="the new zoo's directory")
    im.add_argument("--hparams", default=None, help="the authors' hparams.csv (default: SOURCE/hparams.csv)")
    im.add_argument(
        "--data",
        default=None,
        help="the data set the networks were trained on (default: cifar10 for authors; the one the Small CNN Zoo "
        "records where symzoo loads it; dwsnets: the images the INRs fit, required)",
    )
    im.add_argument("--data-size", type=positive_int, default=None, help="resize the data set's images to this")
    im.add_argument(
        "--networks-per-shard", type=positive_int, default=64, help="samples per shard and work unit (default 64)"
    )
    im.add_argument(
        "--activation",
        default=None,
        choices=["relu", "tanh", "leakyrelu", "sigmoid", "silu", "gelu"],  # zoo.models.ACTIVATIONS
        help="small-cnn-zoo: which networks (default relu); ray-tune: which networks where the trials mix several, "
        "or theirs where params.json names none",
    )
    im.add_argument(
        "--arch",
        default=None,
        help="ray-tune: the networks' architecture where params.json's model::type does not name a ModelZoos CNN: "
        "CNN, CNN2, CNN3 or a spec such as c8k5p,c6k5p,c4k2,flatten,20 (default: read off the checkpoints)",
    )
    im.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=None,
        help="ray-tune: the trials' checkpoint frequency in iterations, where Ray 2.7 or later numbered the "
        "checkpoint folders by count and a trial did not save one per iteration",
    )
    im.add_argument("--data-root", default=None, help="where that data set lies (default: as generate finds it)")
    im.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local cluster)")
    im.add_argument("--no-progress", action="store_true", help="no progress bar")
    im.set_defaults(func=cmd_import)

    ex = sub.add_parser(
        "export", help="a zoo in another project's layout (nfn: the Small CNN Zoo's; dwsnets: DWSNets' INRs)"
    )
    ex.add_argument("zoo", help="zoo directory")
    ex.add_argument(
        "format",
        choices=["nfn", "dwsnets"],
        help="nfn: weights.npy, metrics.csv.gz, layout.csv and NFN's order file; dwsnets: a .pth per INR and a "
        "splits JSON per variant",
    )
    ex.add_argument("--out", type=out_path, required=True, help="a new folder to write")
    ex.set_defaults(func=cmd_export)

    pl = sub.add_parser("plan", help="what `generate CONFIG` would train and store, and what is already done")
    pl.add_argument("config")
    pl.add_argument("--out", type=out_path, default=None, help="zoo directory (default: zoos/<config name>)")
    pl.set_defaults(func=cmd_plan)

    sm = sub.add_parser(
        "submit", help="run a stage on a Ray cluster as a Ray job, e.g. submit --cluster C generate CFG"
    )
    sm.add_argument("--address", default=None, help="Ray dashboard address, e.g. http://HEAD:8265")
    sm.add_argument("--cluster", default=None, help="cluster-launcher YAML, e.g. cluster/aws-gpu.yaml")
    sm.add_argument(
        "--wait", action="store_true", help="stream the job's log until it ends; exit 2 unless it succeeded"
    )
    sm.add_argument(
        "stage", nargs=argparse.REMAINDER, help="the stage and its arguments, e.g. generate CONFIG --out DIR"
    )
    sm.set_defaults(func=cmd_submit)

    rn = sub.add_parser("run", help="the whole study: generate, metanet, mli, lmc, then the report (resumes)")
    rn.add_argument("config", help="study config, e.g. configs/digits_study.yaml")
    rn.add_argument("--out", type=out_path, default=None, help="study directory (default: runs/<config name>)")
    rn.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local cluster)")
    rn.add_argument("--no-progress", action="store_true", help="no progress bars")
    rn.set_defaults(func=cmd_run)

    rp = sub.add_parser("report", help="rebuild a study's report.md and report.html from its stored outputs")
    rp.add_argument("study", help="the --out directory of `symzoo run`")
    rp.set_defaults(func=cmd_report)

    from symzoo.pipelines.registry import STAGES

    for spec in STAGES.values():
        stage = sub.add_parser(spec.name, help=spec.help)
        _analysis_arguments(stage, spec.name)
        spec.add_arguments(stage)

    sp = sub.add_parser(
        "splits",
        help="store the zoo's train/val/test assignment (splits.parquet), paired by sample (INR zoos: by image)",
    )
    sp.add_argument("zoo", help="zoo directory")
    how = sp.add_mutually_exclusive_group()
    how.add_argument(
        "--seed", type=int_in(0, 2**32 - 1), default=None, help="seed of the paired 50/25/25 split (default 0)"
    )
    how.add_argument("--from", dest="from_file", default=None, metavar="FILE", help="CSV/Parquet: model_id, split")
    sp.add_argument("--replace", action="store_true", help="overwrite a different stored split")
    sp.set_defaults(func=cmd_splits)

    cd = sub.add_parser("card", help="write the zoo's README.md: a Hugging Face dataset card (config, columns, ...)")
    cd.add_argument("zoo", help="zoo directory")
    cd.set_defaults(func=cmd_card)

    info = sub.add_parser("info", help="counts, accuracies and sizes of a stored zoo")
    info.add_argument("zoo", help="zoo directory")
    info.add_argument("--verify", action="store_true", help="also check every shard's sha256 against the manifest")
    info.add_argument("--plot", default=None, metavar="FILE.png", help="also plot accuracy by variant and lr")
    info.set_defaults(func=cmd_info)

    vf = sub.add_parser("verify", help="check every shard of a zoo against its manifest (as info --verify)")
    vf.add_argument("zoo", help="zoo directory")
    vf.set_defaults(func=cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except SymzooError as e:
        print(f"symzoo: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (e.g. `| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt as e:
        from symzoo.pipelines.stage import was_terminated

        terminated = was_terminated(e)
        what = "terminated" if terminated else "interrupted"
        print(f"symzoo: {what}; rerun the same command to resume", file=sys.stderr)
        return 143 if terminated else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
