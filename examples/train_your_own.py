"""Your own network below one bit per weight, through subbit's training API only.

A small VGG-style CNN (defined here: subbit does not ship it) on scikit-learn's 8x8 digits:
train it in fp32 with a plain PyTorch loop, compress it with entropy-aware quantization-aware
training to a budget of bits per weight (`subbit.train.fit`), write the weight stream
(`.sbw`, decodable by `subbit decode` and `subbit decode --rtl`), load the stream back into a
fresh instance of the model class and measure it::

    python examples/train_your_own.py --target-bits 1.0 --out runs/vgg
    torchrun --standalone --nproc_per_node 2 examples/train_your_own.py --out runs/vgg-ddp

The same model and data through the command line (``make_model`` and ``loaders`` below)::

    subbit train --model examples/train_your_own.py:make_model --data examples/train_your_own.py:loaders \\
        --epochs 40 --target-bits 1.0 --out runs/vgg-cli
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import subbit.train as sbt


class SmallVGG(nn.Module):
    """Two VGG blocks (two 3x3 convolutions + batch norm + ReLU each, then 2x2 max-pooling), a
    hidden fully connected layer with dropout, and the classifier."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, image_size: int = 8):
        super().__init__()

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                    nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                    nn.MaxPool2d(2)]
        self.features = nn.Sequential(*block(in_channels, width), *block(width, 2 * width))
        side = image_size // 4
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * side * side, 64), nn.ReLU(),
                                        nn.Dropout(0.1), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def make_model(in_channels: int = 1, num_classes: int = 10, image_size: int = 8) -> nn.Module:
    return SmallVGG(in_channels, num_classes, image_size=image_size)


def digits(seed: int = 0):
    """scikit-learn's digits as normalised (N, 1, 8, 8) tensors: train / validation / test datasets
    (1167 / 180 / 450, stratified)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = torch.from_numpy((d.data / 16.0).astype(np.float32)).reshape(-1, 1, 8, 8)
    x = (x - 0.3053) / 0.3760
    y = torch.from_numpy(d.target.astype(np.int64))
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=450, stratify=d.target, random_state=seed)
    train, val = train_test_split(rest, test_size=180, stratify=d.target[rest], random_state=seed)
    return tuple(TensorDataset(x[i], y[i]) for i in (train, val, test))


def loaders(batch_size: int = 64, seed: int = 0):
    """(train, val, test) DataLoaders. Under torchrun the training batches are sharded over the
    processes (DistributedSampler: each takes batch_size / world of every global batch)."""
    train, val, test = digits()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        rank = int(os.environ.get("RANK", "0"))
        sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        tl = DataLoader(train, batch_size=batch_size // world, sampler=sampler, drop_last=True)
    else:
        tl = DataLoader(train, batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    return tl, DataLoader(val, batch_size=500), DataLoader(test, batch_size=500)


@torch.no_grad()
def accuracy(model: nn.Module, loader) -> float:
    model.eval()
    hit = n = 0
    for x, y in loader:
        hit += int((model(x).argmax(1) == y).sum())
        n += len(y)
    return hit / n


def train_fp32(model: nn.Module, dataset, epochs: int, seed: int = 0, lr: float = 0.05) -> None:
    """A plain PyTorch loop (SGD, cosine learning rate). Every process of a torchrun job trains
    the same network (same seed, same data)."""
    loader = DataLoader(dataset, batch_size=64, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * len(loader))
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target-bits", type=float, default=1.0, help="budget: bits per weight of the whole stream")
    p.add_argument("--epochs", type=int, default=40, help="fp32 epochs")
    p.add_argument("--qat-epochs", type=int, default=40, help="entropy-aware QAT epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/vgg", help="output directory: model.sbw, result.json, checkpoint/")
    p.add_argument("--resume", action="store_true", help="continue the QAT checkpointed in OUT/checkpoint")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    t0 = time.perf_counter()

    # 1. your model, your data, your fp32 training
    torch.manual_seed(args.seed)
    model = make_model()
    train, val, test = loaders(seed=args.seed)
    train_fp32(model, train.dataset, args.epochs, args.seed)
    fp32_acc = accuracy(model, test)

    # 2. quantize every Conv2d / Linear (zero-point quantizers, learned step and range) and train
    #    toward the budget; the network kept is the most accurate on `val` whose stream fits
    qnet = sbt.quantize(model)
    res = sbt.fit(qnet, train, val, target_bits=args.target_bits, epochs=args.qat_epochs, lr=1e-3,
                  checkpoint_dir=os.path.join(args.out, "checkpoint"), resume=args.resume)

    # 3. the weight stream, and back into a fresh instance of the model class
    result = {}
    if main_rank:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "model.sbw")
        stream = sbt.save_sbw(qnet, path, info={"model": "SmallVGG", "dataset": "digits"})
        decoded = sbt.load_sbw(path, make_model())
        acc = accuracy(decoded, test)
        assert acc == accuracy(qnet.quantized_model(), test)      # the stream is the trained network
        result = {"weights": stream["weights"], "bits_per_weight": stream["bits_per_weight"],
                  "budget_met": stream["bits_per_weight"] <= args.target_bits, "fp32_accuracy": fp32_acc,
                  "accuracy": acc, "accuracy_drop_points": 100 * (fp32_acc - acc),
                  "val_accuracy": res.score, "layer_bits": [L["bits"] for L in stream["layers"]],
                  "file_bytes": stream["file_bytes"], "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                  "seconds": round(time.perf_counter() - t0, 1),
                  "qat_seconds": round(res.seconds, 1)}
        with open(os.path.join(args.out, "result.json"), "w") as fh:
            json.dump(result, fh, indent=1)
        print(f"SmallVGG on digits: {stream['weights']} coded weights, {stream['bits_per_weight']:.4f} bits/weight "
              f"(budget {args.target_bits:g} {'met' if result['budget_met'] else 'NOT met'}); test accuracy fp32 "
              f"{100 * fp32_acc:.2f}%, decoded stream {100 * acc:.2f}% (drop {result['accuracy_drop_points']:.2f} "
              f"points); {result['seconds']:.0f} s; {path}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
