"""Networks per second that ``symzoo import authors`` converts, against reading the same files alone.

    python bench/import_rate.py [--networks 400] [--dir /tmp/symzoo-import-bench]
    python bench/import_rate.py --ray-tune SOURCE --data fashion_mnist    # a Ray Tune zoo (bench/tune_zoo.py)

Writes N standard and N W-Asym CIFAR-10-shaped ResNet8 files in the authors' layout (the test suite's fixture
writer, tests/test_import_authors.py), then times, best of three on a warm page cache:
  load      torch.load(weights_only=True) of every file (the floor: reading is all any importer must do)
  convert   the import's conversion of every file into shard rows (``import_shard_table``: load, key mapping,
            W-Asym structure check, flat vectors, the Arrow table with row checksums), no Ray, one process
and once, end to end, ``symzoo import`` on a local Ray cluster (start-up included), each as networks per second.
With ``--ray-tune`` the same three on an existing Ray Tune zoo: the floor loads every checkpoint file of every
trial, the conversion also reads params.json and result.json and writes every checkpoint as weights.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=400, help="networks per variant")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/symzoo-import-bench"))
    parser.add_argument("--ray-tune", type=Path, default=None, help="time this Ray Tune zoo's import instead")
    parser.add_argument("--data", default="fashion_mnist", help="--ray-tune: the data set its trials trained on")
    args = parser.parse_args()
    if args.ray_tune is not None:
        return ray_tune_rate(args)

    import test_import_authors as fixture

    from symzoo.pipelines.importing import import_shard_table, zoo_structure
    from symzoo.pipelines.shard import layouts_for
    from symzoo.zoo.config import validate
    from symzoo.zoo.data import Dataset
    from symzoo.zoo.formats import authors
    from symzoo.zoo.plan import plan_configured

    torch.set_num_threads(1)
    shutil.rmtree(args.dir, ignore_errors=True)
    source = args.dir / "source"
    original = fixture.authors_shapes
    fixture.authors_shapes = lambda in_channels=3, classes=10: original(3, classes)  # CIFAR-10's input
    fixture.write_authors_zoo(source, n=args.networks)
    found = authors.find_networks(source)
    files = [p for v in found.values() for p in v.values()]
    rows = authors.read_hparams(source / "hparams.csv")
    data = Dataset(  # shapes only: the conversion never looks at images
        "cifar10", torch.zeros(10, 3, 32, 32, dtype=torch.uint8), torch.arange(10), torch.zeros(10, 3, 32, 32,
        dtype=torch.uint8), torch.arange(10), mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=10,
    )  # fmt: skip
    raw = {"name": "bench", "data": {"name": "cifar10"}, "networks": len(rows), "model": {"arch": "resnet8"}}
    raw["imported"] = {"format": "authors", "source": str(source), "hparams": rows}
    standard_layout = layouts_for({**validate(raw), "variants": ["standard"]}, data)["standard"]
    raw["model"]["fixed_structure"] = zoo_structure(found["w_asym"], standard_layout)
    cfg = validate(raw)
    layouts_json = {v: lay.to_json() for v, lay in layouts_for(cfg, data).items()}
    sources = {v: {i: str(p) for i, p in f.items()} for v, f in found.items()}
    specs = plan_configured(cfg)

    what = f"{len(files)} networks ({args.networks} standard + {args.networks} W-Asym CIFAR-10 ResNet8s)"
    cmd = ["authors", str(source), "--out", str(args.dir / "zoo")]
    report(len(files), files, lambda: import_shard_table(specs, cfg, sources, layouts_json), what, cmd)


def report(n: int, files: list[Path], convert, what: str, import_args: list[str]) -> None:
    """Print the three rates: ``torch.load`` of ``files`` (the floor), ``convert()`` (best of three, one core),
    and ``symzoo import IMPORT_ARGS`` end to end on a local Ray cluster, each for ``n`` networks."""
    from weight_encoding import best_of

    load = best_of(lambda: [torch.load(p, map_location="cpu", weights_only=True) for p in files])
    converted = best_of(convert)
    print(f"{what}, one core:")
    print(f"  load     {n / load:8.1f} networks/s   (torch.load of every file alone, the floor)")
    print(f"  convert  {n / converted:8.1f} networks/s   ratio to load {load / converted:.2f}")
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "symzoo.cli", "import", *import_args, "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(done.stderr[-2000:])
    print(f"  symzoo import on local Ray (start-up included): {n / seconds:.1f} networks/s ({seconds:.0f} s)")


def ray_tune_rate(args) -> None:
    from symzoo.pipelines.importing import import_shard_table, ray_tune_config
    from symzoo.pipelines.shard import layouts_for
    from symzoo.zoo.config import validate
    from symzoo.zoo.plan import plan_configured
    from symzoo.zoo.sources import load_configured

    torch.set_num_threads(1)
    root = args.ray_tune.resolve()
    raw, sources, _ = ray_tune_config(root, args.data, None, None, None, None, None)
    cfg = validate(raw)
    layouts_json = {v: lay.to_json() for v, lay in layouts_for(cfg, load_configured(cfg["data"])).items()}
    specs = plan_configured(cfg)
    files = sorted(root.rglob("checkpoints"))
    what = f"{len(specs)} trials, {len(files)} checkpoint files ({cfg['model']['layers']})"
    out = args.dir / "tune_zoo"
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["ray-tune", str(root), "--out", str(out), "--data", args.data]
    report(len(specs), files, lambda: import_shard_table(specs, cfg, sources, layouts_json), what, cmd)


if __name__ == "__main__":
    main()
