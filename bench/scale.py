"""Scale: each command's wall time, networks per second and peak memory at several zoo sizes, and how they grow.

    python bench/scale.py [--sizes 2000 5000 20000] [--dir /tmp/symzoo-scale]

SYNTHETIC WEIGHTS. To carry the byte volume of ResNet8 zoos (77,754 parameters on digits' one channel, init and
final vectors: 622 kB per network, 12.4 GB at 20,000) through the real commands on a 2-core machine, training is
replaced by random weights: ``generate``'s driver, Ray tasks, shard writer, manifest and resume logic are the real
ones (the bench swaps ``pipelines.generate.train_shard`` for a task that draws rows instead of training them). The
zoo is N ResNet8s on digits: N/4 samples x 2 replicates x standard / W-Asym. Every command runs in a fresh process:
  generate  the zoo, workers writing their own shards (Ray start included)
  rerun     generate again with nothing to do (no Ray start)
  load      Zoo.weights("final") of all networks, then of W-Asym only, then np.load of the same bytes; three
            rounds: the best is the warm figure, the first also faults in fresh memory
  metanet   ridge on W-Asym's flat weights (one alpha, one seed): the run's peak against its input matrix
  mli       MLI of a seeded sample of 50 networks per variant (5 alphas, augmented loss)
  lmc       LMC of a seeded sample of 25 replicate pairs per variant (5 alphas, Re-Basin for standard)
mli and lmc evaluate the same number of networks at every size, so their times should stay flat: what grows with
N there is the metadata and the data path. (The paper's 300 per variant take ~5 CPU-minutes per 100 here.)
Peak RSS: the driver's (getrusage) and the largest Ray worker's (VmHWM of every ray:: process under this driver,
read before Ray stops). Growth exponent between sizes a < b: log(t_b / t_a) / log(b / a); 1.0 is linear.
Targets (issue 21): every exponent <= 1.1 from 2,000 to 20,000; driver peak <= 1.5 GiB at 20,000 for generate,
mli and lmc; a metanet run <= 1.5x its input; rerun <= 30 s at 20,000; one variant <= 0.6x the time of all;
Zoo.weights >= 1 GiB/s and within 2x of np.load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("generate", "rerun", "load", "metanet", "mli", "lmc")


def config(n: int) -> dict:
    return {
        "name": f"scale_{n}",
        "seed": 0,
        "data": {"name": "digits"},
        "model": {"arch": "resnet8"},
        "variants": ["standard", "w_asym"],
        "networks": n // 4,
        "replicates": 2,
        "hyperparameters": {"epochs": 1},
        "training": {"batch_size": 64, "augment": {"flip": False, "cutout": 0}, "amp": False},
        "execution": {"networks_per_shard": 100, "cpus_per_task": 1},
    }


def synthetic_train_shard_task():
    """A function with ``train_shard``'s signature (the runner submits it as a Ray task) that draws each planned
    network's rows instead of training."""

    def synthetic_train_shard(spec_rows, cfg, data, layouts_json, write_to, progress, unit):
        from symzoo.pipelines.stage import Written
        from symzoo.zoo.config import config_hash
        from symzoo.zoo.store import rows_to_table, write_shard

        size = next(iter(layouts_json.values()))["size"]
        rows = []
        for spec in spec_rows:
            rng = np.random.default_rng(spec.model_id)
            init = rng.standard_normal(size, dtype=np.float32) * np.float32(0.05)
            final = init + rng.standard_normal(size, dtype=np.float32) * np.float32(0.01)
            rows.append(
                spec.row()
                | {"arch": cfg["model"]["arch"], "dataset": cfg["data"]["name"], "status": "ok", "reason": ""}
                | {"epochs_done": spec.hparams.epochs, "train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.0}
                | {"test_acc": float(rng.uniform(0.1, 0.9)), "seconds": 0.0}
                | {"history_train_loss": [1.0], "history_train_acc": [0.5]}
                | {"weights_init": init, "weights_final": final}
            )
        progress.set.remote(unit, len(rows))
        table = rows_to_table(rows, layouts_json, cfg["training"]["checkpoint_epochs"], config_hash(cfg))
        return table if write_to is None else Written(write_shard(write_to, unit, table))

    return synthetic_train_shard


def ray_worker_peak_mib() -> float:
    """The largest peak RSS (VmHWM) among this process's Ray workers (descendants of this driver, which started the
    local cluster: another Ray cluster on the machine is not counted), read while they live."""
    parents, names, peaks = {}, {}, {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        pid = int(status.parent.name)
        parents[pid], names[pid] = int(fields["PPid"]), fields["Name"].strip()
        peaks[pid] = int(fields.get("VmHWM", "0 kB").split()[0]) / 1024
    me, peak = os.getpid(), 0.0
    for pid in parents:
        ancestor = parents[pid]
        while ancestor not in (0, 1, me) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == me and names[pid].startswith("ray::"):
            peak = max(peak, peaks[pid])
    return peak


def driver_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(command: str, n: int, base: Path) -> dict:
    """One command on the zoo of ``n`` networks, in this (fresh) process."""
    import ray

    from symzoo.pipelines import generate as generate_module

    cfg_path = base / f"scale_{n}.json"
    cfg_path.write_text(json.dumps(config(n)))
    zoo_dir, stage_dir = base / f"zoo_{n}", base / f"{command}_{n}"
    result: dict = {"command": command, "n": n}
    start = time.perf_counter()
    if command in ("generate", "rerun"):
        generate_module.train_shard = synthetic_train_shard_task()
        report = generate_module.generate(cfg_path, zoo_dir, show_progress=False)
        assert report.ok, report.failed
        result["ray_started"] = ray.is_initialized()
    elif command == "load":
        from symzoo.zoo.store import open_zoo

        zoo = open_zoo(zoo_dir, verify=False)
        _ = zoo.frame
        npy = base / "final.npy"
        all_s, variant_s, npload_s = [], [], []
        for repeat in range(3):  # the first read of each also faults in fresh memory (slow on this VM)
            all_s.append(timed(lambda: zoo.weights("final")))
            if repeat == 0:
                np.save(npy, zoo.weights("final"))
            variant_s.append(timed(lambda: zoo.weights("final", variant="w_asym")))
            npload_s.append(timed(lambda: np.load(npy)))
        npy.unlink()
        result["gib"] = n * 77_754 * 4 / 2**30
        result |= {"all_first_s": all_s[0], "all_s": min(all_s), "variant_s": min(variant_s)}
        result |= {"npload_first_s": npload_s[0], "npload_s": min(npload_s)}
        result["seconds"] = result["all_first_s"]
        start = None
    elif command == "metanet":
        from symzoo.pipelines.metanet import metanet_stage

        section = {"metanets": ["ridge"], "lrs": [1.0], "seeds": 1, "variants": ["w_asym"]}
        metanet_stage(zoo_dir, stage_dir, section, show_progress=False)
        result["input_mib"] = (n // 2) * 77_754 * 4 / 2**20  # W-Asym's trainable entries are fewer: an upper bound
    elif command == "mli":
        from symzoo.pipelines.mli import mli_stage

        mli_stage(zoo_dir, stage_dir, {"sample": 50, "alphas": 5, "loss": "augmented"}, show_progress=False)
    elif command == "lmc":
        from symzoo.pipelines.lmc import lmc_stage

        lmc_stage(zoo_dir, stage_dir, {"sample": 25, "alphas": 5}, show_progress=False)
    if start is not None:
        result["seconds"] = time.perf_counter() - start
    result["driver_mib"] = driver_peak_mib()
    result["worker_mib"] = ray_worker_peak_mib() if ray.is_initialized() else 0.0
    return result


def timed(read) -> float:
    """Seconds one call of ``read`` takes; its result is dropped at once."""
    start = time.perf_counter()
    read()
    return time.perf_counter() - start


def exponent(t_a: float, t_b: float, a: int, b: int) -> float:
    return math.log(max(t_b, 1e-9) / max(t_a, 1e-9)) / math.log(b / a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 20000])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/symzoo-scale"))
    parser.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=COMMANDS)
    parser.add_argument("--one", nargs=2, metavar=("COMMAND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one[0], int(args.one[1]), args.dir)), flush=True)
        return
    results: dict[tuple[str, int], dict] = {}
    for n in args.sizes:
        for command in args.commands:
            done = subprocess.run(
                [sys.executable, __file__, "--dir", str(args.dir), "--one", command, str(n)],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{command} at {n} failed")
            r = results[command, n] = json.loads(line[7:])
            with (args.dir / "results.jsonl").open("a") as log:  # kept when a later size is stopped
                log.write(line[7:] + "\n")
            print(
                f"  {command} {n}: {r['seconds']:.1f} s, driver {r['driver_mib']:.0f} MiB", file=sys.stderr, flush=True
            )
    print("SYNTHETIC weights through the real commands (bench/scale.py); ResNet8 on digits, 622 kB per network")
    print(f"{'command':9} {'N':>6} {'seconds':>8} {'nets/s':>8} {'driver MiB':>10} {'worker MiB':>10} {'exponent':>8}")
    for command in args.commands:
        previous = None
        for n in args.sizes:
            r = results[command, n]
            growth = f"{exponent(previous['seconds'], r['seconds'], previous['n'], n):8.2f}" if previous else " " * 8
            print(
                f"{command:9} {n:6d} {r['seconds']:8.1f} {n / r['seconds']:8.0f} {r['driver_mib']:10.0f} "
                f"{r['worker_mib']:10.0f} {growth}"
            )
            previous = r
    for n in args.sizes:
        if ("load", n) in results:
            r = results["load", n]
            print(
                f"load {n}: all {r['gib'] / r['all_s']:.2f} GiB/s best of 3 ({r['gib'] / r['all_first_s']:.2f} the "
                f"first), np.load {r['gib'] / r['npload_s']:.2f} GiB/s ({r['gib'] / r['npload_first_s']:.2f}); "
                f"zoo/np.load time {r['all_s'] / r['npload_s']:.2f}x; one variant {r['variant_s'] / r['all_s']:.2f}x "
                "the time of all"
            )
        if ("metanet", n) in results:
            r = results["metanet", n]
            print(
                f"metanet {n}: largest worker peak {r['worker_mib']:.0f} MiB for an input matrix of at most "
                f"{r['input_mib']:.0f} MiB ({r['worker_mib'] / r['input_mib']:.2f}x; an idle worker holds ~0.8 GiB "
                "of imports)"
            )
    if len(args.sizes) >= 2:
        a, b = args.sizes[0], args.sizes[-1]
        print(f"growth exponent {a} -> {b}:", end="")
        for command in args.commands:
            ta, tb = results[command, a]["seconds"], results[command, b]["seconds"]
            print(f" {command} {exponent(ta, tb, a, b):.2f}", end="")
        print()


if __name__ == "__main__":
    main()
