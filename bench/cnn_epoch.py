"""Seconds per epoch of Keras's mnist_convnet on full MNIST: fromzero against PyTorch.

    Conv2D(32, 3, relu) → MaxPool2D(2) → Conv2D(64, 3, relu) → MaxPool2D(2)
    → Flatten → Dropout(0.5) → Dense(10, softmax);  Adam(1e-3), batch 128

Both run the same model on the same 60,000 images with the same thread count
(fromzero NHWC, PyTorch its native NCHW with softmax folded into the loss).
With --repeat N the two alternate N times, each repeat one epoch of each, and
the best epoch of each counts: on a shared machine that keeps the two under
the same load. The last line gives the ratio and how busy the other
processes kept the machine (0 cores = quiet).

    python bench/cnn_epoch.py --threads 2 [--repeat 1] [--images 60000] [--skip-torch]
"""

import argparse
import os
import time

import numpy as np

import fromzero as fz
from compare import busy_cpu_seconds, own_cpu_seconds
from fromzero import cli


class FromzeroRun:
    def __init__(self, x, y, batch_size):
        fz.utils.set_random_seed(0)
        self.model = cli.build_model("cnn")
        self.model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                           metrics=["accuracy"])
        self.x, self.y, self.batch_size = x[..., None], y, batch_size

    def epoch(self):
        """(seconds, mean training loss) of one epoch."""
        start = time.perf_counter()
        history = self.model.fit(self.x, self.y, batch_size=self.batch_size, epochs=1, verbose=0)
        return time.perf_counter() - start, history.history["loss"][-1]


class TorchRun:
    def __init__(self, x, y, batch_size, threads):
        import torch
        from torch import nn

        self.torch = torch
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.model = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.5), nn.Linear(64 * 5 * 5, 10))
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, eps=1e-7)
        self.xs = torch.from_numpy(x[:, None])  # (N, 1, 28, 28)
        self.ys = torch.from_numpy(y.astype(np.int64))
        self.generator = torch.Generator().manual_seed(0)
        self.batch_size = batch_size

    def epoch(self):
        self.model.train()
        start = time.perf_counter()
        order = self.torch.randperm(len(self.xs), generator=self.generator)
        total = 0.0
        for i in range(0, len(self.xs), self.batch_size):
            index = order[i:i + self.batch_size]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(self.xs[index]), self.ys[index])
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(index)
        return time.perf_counter() - start, total / len(self.xs)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1,
                        help="epochs of each engine, alternating; the best counts (default 1)")
    parser.add_argument("--images", type=int, default=60000,
                        help="train on the first N images (default: all 60,000)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--skip-torch", action="store_true")
    args = parser.parse_args()
    if min(args.threads, args.repeat, args.images, args.batch_size) < 1:
        parser.error("--threads, --repeat, --images and --batch-size must be at least 1")
    fz.set_num_threads(args.threads)
    (x, y), _ = fz.datasets.mnist.load_data()
    x = (x[:args.images] / 255.0).astype(np.float32)
    y = y[:args.images]
    print(f"mnist_convnet, {len(x)} images, batch {args.batch_size}, {args.threads} thread(s), "
          f"{fz.info()['simd']} GEMM")
    runs = {"fromzero": FromzeroRun(x, y, args.batch_size)}
    if not args.skip_torch:
        runs["pytorch"] = TorchRun(x, y, args.batch_size, args.threads)
    start = time.perf_counter(), busy_cpu_seconds(), own_cpu_seconds()
    best = {}
    for repeat in range(args.repeat):
        for name, run in runs.items():
            seconds, loss = run.epoch()
            best[name] = min(best.get(name, seconds), seconds)
            print(f"{name + ':':10s}{seconds:.2f} s/epoch (epoch {repeat + 1} loss {loss:.4f})",
                  flush=True)
    wall = time.perf_counter() - start[0]
    others_busy = max(0.0, (busy_cpu_seconds() - start[1]) - (own_cpu_seconds() - start[2])) / wall
    line = f"best: fromzero {best['fromzero']:.2f} s/epoch"
    if "pytorch" in best:
        line += (f", pytorch {best['pytorch']:.2f} s/epoch, "
                 f"pytorch/fromzero {best['pytorch'] / best['fromzero']:.2f}x")
    print(f"{line}; other processes kept {others_busy:.2f} of {os.cpu_count()} cores busy")


if __name__ == "__main__":
    main()
