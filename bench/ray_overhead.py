"""Ray's overhead: networks per hour through `symzoo generate` against a plain single-process loop, same run.

    python bench/ray_overhead.py [--networks 6]

Both train the same networks of configs/digits_demo.yaml (with the default 8 samples reduced to --networks).
(a) Ray with one 1-CPU task at a time against the loop with 1 thread: Ray's own overhead (target: < 10%).
(b) Ray with 2 concurrent 1-CPU tasks against the loop with 2 threads: what equal cores buy through Ray.
Ray's cluster start-up is timed separately: it is paid once per run, not per network.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ray
import torch
import yaml

from symzoo.pipelines.generate import generate
from symzoo.pipelines.shard import dataset_from, train_specs
from symzoo.zoo.config import load_config
from symzoo.zoo.plan import plan_configured

ROOT = Path(__file__).resolve().parent.parent


def make_config(tmp: Path, networks: int, cpus: int, cpus_total: int) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "digits_demo.yaml").read_text())
    raw["networks"] = networks
    raw["execution"] = {
        "networks_per_shard": max(1, networks * len(raw["variants"]) // (2 * cpus_total)),
        "cpus_per_task": cpus,
    }
    path = tmp / f"bench_{cpus_total}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def loop_seconds(config: Path, threads: int) -> tuple[float, int]:
    cfg = load_config(config)
    torch.set_num_threads(threads)
    data = dataset_from(cfg)
    specs = plan_configured(cfg)
    start = time.perf_counter()
    train_specs(specs, cfg, data)
    return time.perf_counter() - start, len(specs)


def ray_seconds(config: Path, out: Path) -> float:
    start = time.perf_counter()
    report = generate(config, out, show_progress=False)
    assert report.ok
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=6, help="hyperparameter samples (x3 variants)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for cores in (1, 2):
            config = make_config(tmp, args.networks, 1, cores)
            loop, n = loop_seconds(config, threads=cores)
            start = time.perf_counter()
            ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
            startup = time.perf_counter() - start
            through_ray = ray_seconds(config, tmp / f"zoo_{cores}")
            ray.shutdown()
            print(
                f"{cores} core(s), {n} networks: loop ({cores} thread) {3600 * n / loop:7.0f} nets/h; "
                f"Ray ({cores} x 1-CPU tasks) {3600 * n / through_ray:7.0f} nets/h; "
                f"Ray/loop time ratio {through_ray / loop:.3f} (cluster start-up {startup:.1f} s, not included)"
            )


if __name__ == "__main__":
    main()
