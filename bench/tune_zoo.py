"""A real Ray Tune zoo in the ModelZoos' layout (Schuerholt et al. 2022), to import with ``symzoo import ray-tune``.

    pip install "ray[tune]"   # Tune's extras (symzoo itself needs none of them)
    python bench/tune_zoo.py --out /tmp/tune_src [--trials 200] [--epochs 4] [--train 10000] [--data fashion_mnist]

Each trial is a class ``Trainable`` as the ModelZoos wrote theirs (their ``NN_tune_trainable``, written again, not
copied): the ModelZoos' ``CNN`` as a ``module_list`` (Conv2d(1, 8, 5), MaxPool2d, activation, Dropout, Conv2d(8, 6,
5), ..., Linear(36, 20), Linear(20, 10)), Adam, one epoch per ``step()``, a checkpoint per iteration written as
``checkpoint_<k>/checkpoints`` (``torch.save(state_dict)``), ``train_loss``/``train_acc``/``test_loss``/``test_acc``
in ``result.json``, the config in ``params.json`` with the ModelZoos' keys. The hyperparameters are drawn as a
"hyperparameter" zoo of theirs: learning rate log-uniform 1e-4..1e-2, weight decay log-uniform 1e-6..1e-2,
dropout 0 or 0.1 (ModelZoos use 0..0.5), activation tanh (their MNIST/Fashion uniform zoos'), seed per trial.
Images are symzoo's loader's (standardised as ``data.normalize``), on a ``--train`` subset of the training set.
Ray 2.7+ names checkpoints by count: import with ``--checkpoint-every 1`` only where a trial missed one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_import_ray_tune import module_list_cnn, run  # noqa: E402  (the test suite's ModelZoos CNN, one copy)


def make_trainable(tune):
    class CNNTrainable(tune.Trainable):
        def setup(self, config, data=None):
            torch.set_num_threads(1)
            self.net = module_list_cnn(config["model::nlin"], config["model::dropout"], config["seed"])
            for m in self.net.module_list:
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_uniform_(m.weight)
                    m.bias.data.fill_(0.01)
            self.opt = torch.optim.Adam(self.net.parameters(), lr=config["optim::lr"], weight_decay=config["optim::wd"])
            self.x_train, self.y_train, self.x_test, self.y_test = data
            self.batch = config["training::batchsize"]

        def step(self):
            self.net.train()
            order = torch.randperm(len(self.y_train))
            loss_sum, correct = 0.0, 0
            for i in range(0, len(order), self.batch):
                idx = order[i : i + self.batch]
                out = run(self.net, self.x_train[idx])
                loss = nn.functional.cross_entropy(out, self.y_train[idx])
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
                loss_sum += loss.item() * len(idx)
                correct += int((out.argmax(1) == self.y_train[idx]).sum())
            self.net.eval()
            with torch.no_grad():
                out = run(self.net, self.x_test)
                test_loss = float(nn.functional.cross_entropy(out, self.y_test))
                test_acc = float((out.argmax(1) == self.y_test).float().mean())
            n = len(order)
            return {"train_loss": loss_sum / n, "train_acc": correct / n, "test_loss": test_loss, "test_acc": test_acc}

        def save_checkpoint(self, checkpoint_dir):
            torch.save(self.net.state_dict(), os.path.join(checkpoint_dir, "checkpoints"))

        def load_checkpoint(self, checkpoint_dir):
            self.net.load_state_dict(torch.load(os.path.join(checkpoint_dir, "checkpoints"), weights_only=True))

    return CNNTrainable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train", type=int, default=10000, help="training images (a seeded subset)")
    parser.add_argument("--data", default="fashion_mnist")
    args = parser.parse_args()

    import test_import_ray_tune
    from ray import cloudpickle, tune

    cloudpickle.register_pickle_by_value(test_import_ray_tune)  # Tune's workers do not have tests/ on their path

    from symzoo.zoo.config import validate
    from symzoo.zoo.sources import load_configured

    data = load_configured(validate({"data": {"name": args.data}, "networks": 1})["data"])
    keep = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(0))[: args.train]
    tensors = (data.normalize(data.x_train[keep]), data.y_train[keep], data.normalize(data.x_test), data.y_test)
    space = {
        "model::type": "CNN",
        "model::nlin": "tanh",
        "model::channels_in": 1,
        "model::dropout": tune.choice([0.0, 0.1]),
        "model::init_type": "kaiming_uniform",
        "optim::optimizer": "adam",
        "optim::lr": tune.loguniform(1e-4, 1e-2),
        "optim::wd": tune.loguniform(1e-6, 1e-2),
        "training::batchsize": 32,
        "training::epochs_train": args.epochs,
        "dataset::name": args.data,
        "seed": tune.randint(0, 2**31 - 1),
    }
    start = time.perf_counter()
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(make_trainable(tune), data=tensors), {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            num_samples=args.trials, search_alg=tune.search.BasicVariantGenerator(random_state=0)
        ),
        run_config=tune.RunConfig(
            storage_path=str(args.out.resolve()),
            name="modelzoo_cnn",
            stop={"training_iteration": args.epochs},
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
            verbose=0,
        ),
    )
    results = tuner.fit()
    accs = [r.metrics.get("test_acc", float("nan")) for r in results]
    print(f"{len(accs)} trials x {args.epochs} epochs in {time.perf_counter() - start:.0f} s; test acc "
          f"min {min(accs):.3f} median {sorted(accs)[len(accs) // 2]:.3f} max {max(accs):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
