"""A zoo, and its MLI, on one machine without Ray: what a GPU box with torch alone can run.

    python -m symzoo.pipelines.local zoo configs/cifar10_paper.yaml --networks 24 --device cuda --out /tmp/zoo
    python -m symzoo.pipelines.local mli configs/cifar10_mli_call.yaml --work /tmp/mli_call --deadline-s 470

``zoo`` trains the config's zoo into OUT exactly as ``symzoo generate``'s workers would (``pipelines.shard``: the
config's pack size and ``compile`` resolved for this device, epoch-sorted shards, the stored schema), skips shards
already written, records the manifest as generate's driver does, and prints accuracy per variant beside the paper's
and networks per hour. ``mli`` does that into WORK/zoo, then evaluates the MLI stage's own units
(``pipelines.mli``'s options, ``analysis.mli.mli_payloads``: the same keys, files and stage.json) into WORK/mli,
round-robin over measurements and variants, starting no unit that would end past ``--deadline-s`` (counted from
the start), so a short call still returns every family. Afterwards, on any machine with the zoo's data,
``symzoo mli WORK/zoo --out WORK/mli`` finds those units done, evaluates the rest and writes the table and figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from symzoo.analysis.mli import evaluate_payload, mli_payloads, mli_table, per_network_stats
from symzoo.analysis.paper import ZOO_ACCURACY, is_paper_resnet8_zoo
from symzoo.analysis.payloads import take_unevaluated
from symzoo.analysis.selection import finished_networks
from symzoo.pipelines.manifest import finalize_manifest, prepare_manifest
from symzoo.pipelines.mli import SPEC as MLI
from symzoo.pipelines.outputs import claim_stage_dir, stage_identity, write_parquet
from symzoo.pipelines.registry import load_study_config
from symzoo.pipelines.shard import dataset_from, layouts_for, shard_specs, train_shard_table, training_line
from symzoo.zoo.info import summarise_test_accuracy
from symzoo.zoo.lock import directory_lock
from symzoo.zoo.store import open_zoo, shard_path, write_shard

START = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - START:6.1f} s] {message}", flush=True)


def config_for(path: str, networks: int | None, device: str, seed: int | None = None) -> dict:
    """The config as a worker of generate resolves it on ``device``, with ``networks`` samples (and another zoo
    ``seed``: fresh draws, masks and inits) where given."""
    cfg = load_study_config(path)
    if networks:
        cfg["networks"] = networks
    if seed is not None:
        cfg["seed"] = seed
    if device == "cpu":
        cfg["execution"]["gpus_per_task"] = 0
    return cfg


def train_zoo(cfg: dict, zoo_dir: Path, device: str) -> int:
    """Every shard not yet written, then the manifest, as generate's driver records them; networks trained."""
    data = dataset_from(cfg)
    layouts = layouts_for(cfg, data)
    shards = shard_specs(cfg)
    manifest = prepare_manifest(cfg, zoo_dir, data, layouts, len(shards))  # on the CPU copy: it fingerprints it
    say(f"data {cfg['data']['name']} loaded; {sum(map(len, shards))} networks in {len(shards)} shards")
    data = data.to(device)
    layouts_json = {v: layout.to_json() for v, layout in layouts.items()}
    checksums, trained = {}, 0
    for index, specs in enumerate(shards):
        path = shard_path(zoo_dir, index)
        if path.exists():
            say(f"shard {index} already written")
            continue

        def progress(done: int, index: int = index, total: int = len(specs)) -> None:
            say(f"shard {index}: {done}/{total} networks trained")

        checksums[path.name] = write_shard(zoo_dir, index, train_shard_table(specs, cfg, data, layouts_json, progress))
        trained += len(specs)
    finalize_manifest(zoo_dir, manifest, checksums, True, len(shards))
    return trained


def summary_lines(zoo_dir: Path) -> list[str]:
    """Per variant: train / test accuracy with ``symzoo info``'s summary (median, the mean stratified over lr x wd
    quartiles: docs/paper.md §2), the paper's beside it and the divergences; an INR zoo's PSNR instead (its
    networks fit images: they have no accuracy)."""
    zoo = open_zoo(zoo_dir)
    frame = zoo.frame
    if zoo.config.get("task") == "inr":
        lines = []
        for variant, g in frame.groupby("variant", sort=False):
            psnr = g.loc[g.status == "ok", "psnr"]
            lines.append(
                f"{variant:10s} {len(g):4d} INRs  PSNR median {psnr.median():5.1f} dB  mean {psnr.mean():5.1f} dB"
                f"  {not_finished(g)}"
            )
        return lines
    summary = summarise_test_accuracy(frame, zoo.config["hyperparameters"])
    lines = []
    for variant, g in frame.groupby("variant", sort=False):
        s, paper = summary.loc[variant], ZOO_ACCURACY.get(str(variant), (float("nan"), float("nan")))
        train = g.loc[g.status == "ok", "train_acc"].mean()
        lines.append(
            f"{variant:10s} {len(g):3d} nets  train/test acc mean {100 * train:5.1f}% / {100 * s['mean']:5.1f}%  "
            f"median test {100 * s['median']:5.1f}%  stratified {100 * s['stratified_mean']:5.1f}%"
            f"  paper {paper[0]}% / {paper[1]}%  {not_finished(g)}"
        )
    return lines


def not_finished(g: pd.DataFrame) -> str:
    """A variant's count of diverged and failed networks, as the summary lines print them."""
    return f"diverged {int((g.status == 'diverged').sum())}  failed {int((g.status == 'failed').sum())}"


def round_robin(payloads: list[dict]) -> list[dict]:
    """Units reordered so that every (measurement, variant) advances together: augmented first (the paper's)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for p in sorted(payloads, key=lambda p: p["measurement"] != "augmented"):
        groups.setdefault((p["measurement"], p["networks"]["variant"].iloc[0]), []).append(p)
    rounds = max((len(g) for g in groups.values()), default=0)
    return [g[i] for i in range(rounds) for g in groups.values() if i < len(g)]


def evaluate_mli_units(zoo_dir: Path, mli_dir: Path, device: str, deadline: float) -> pd.DataFrame:
    """The MLI stage's units in round-robin order until the deadline; returns the curves evaluated and found."""
    zoo = open_zoo(zoo_dir)
    opts = MLI.resolve(zoo.config.get("mli"))
    claim_stage_dir(mli_dir, "mli", stage_identity(zoo, opts.as_dict(), MLI.identity))
    networks, skipped = finished_networks(zoo.frame)
    say(f"mli: {len(networks)} finished networks; skipped {skipped}")
    data = zoo.dataset().to(device)
    payloads = round_robin(mli_payloads(networks, zoo, opts.loss, opts.networks_per_unit))
    longest: dict[tuple[str, str], float] = {}
    frames = []
    for i, payload in enumerate(payloads):
        path = mli_dir / "units" / f"{payload['key']}.parquet"
        kind = (payload["measurement"], payload["networks"]["variant"].iloc[0])
        if path.exists():
            frames.append(pd.read_parquet(path).drop(columns="key"))
            continue
        if time.perf_counter() - START + longest.get(kind, 0.0) > deadline:
            say(f"mli: deadline: {i} of {len(payloads)} units visited; the rest are left for `symzoo mli`")
            break
        begin = time.perf_counter()
        curves = evaluate_payload(payload, zoo.config, data, opts.alphas, opts.batch_size)
        write_parquet(path, curves.assign(key=payload["key"]))
        longest[kind] = max(longest.get(kind, 0.0), time.perf_counter() - begin)
        frames.append(curves)
        say(f"mli unit {i + 1}/{len(payloads)} {payload['key']}: {time.perf_counter() - begin:.1f} s")
    if not frames:
        return pd.DataFrame()
    curves = take_unevaluated(pd.concat(frames, ignore_index=True), "model_id", skipped, "networks")
    say(f"mli: skipped {skipped}")
    return curves


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"


def run_zoo(args: argparse.Namespace) -> None:
    cfg = config_for(args.config, args.networks, args.device, args.seed)
    out = Path(args.out)
    say(f"device: {device_name(args.device)}; torch {torch.__version__}; {cfg['name']}; {training_line(cfg)}")
    begin = time.perf_counter()
    with directory_lock(out, "python -m symzoo.pipelines.local zoo"):  # one writer, as generate holds it
        trained = train_zoo(cfg, out, args.device)
    seconds = time.perf_counter() - begin
    for line in summary_lines(out):
        print(line, flush=True)
    if trained:
        print(f"{trained} networks in {seconds:.0f} s: {3600 * trained / seconds:.0f} networks/hour (compilation in)")


def run_mli(args: argparse.Namespace) -> None:
    cfg = config_for(args.config, args.networks, args.device, args.seed)
    work = Path(args.work)
    say(f"device: {device_name(args.device)}; torch {torch.__version__}; {cfg['name']}; {training_line(cfg)}")
    with directory_lock(work / "zoo", "python -m symzoo.pipelines.local mli"):
        train_zoo(cfg, work / "zoo", args.device)
    say("zoo complete")
    for line in summary_lines(work / "zoo"):
        print(line, flush=True)
    with directory_lock(work / "mli", "python -m symzoo.pipelines.local mli"):
        curves = evaluate_mli_units(work / "zoo", work / "mli", args.device, args.deadline_s)
    if curves.empty:
        sys.exit("no MLI unit was evaluated")
    stats = per_network_stats(curves)
    variants = [v for v in cfg["variants"] if v in set(stats["variant"])]
    for measurement in dict.fromkeys(curves["measurement"]):
        print(mli_table(stats, variants, measurement, is_paper_resnet8_zoo(cfg)), flush=True)
    say("done")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m symzoo.pipelines.local", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, run in (("zoo", run_zoo), ("mli", run_mli)):
        p = sub.add_parser(name)
        p.add_argument("config")
        p.add_argument("--networks", type=int, default=None, help="samples per variant (default: the config's)")
        p.add_argument("--seed", type=int, default=None, help="another zoo seed: fresh draws (default: the config's)")
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        p.set_defaults(run=run)
        if name == "zoo":
            p.add_argument("--out", default="/tmp/zoo_local", help="the zoo's directory")
        else:
            p.add_argument("--work", default="/tmp/mli_call", help="WORK/zoo and WORK/mli are written here")
            p.add_argument("--deadline-s", type=float, default=470.0, help="start no MLI unit that would end later")
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
