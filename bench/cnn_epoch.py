"""Seconds per epoch of Keras's mnist_convnet on full MNIST: fromzero against PyTorch.

    Conv2D(32, 3, relu) → MaxPool2D(2) → Conv2D(64, 3, relu) → MaxPool2D(2)
    → Flatten → Dropout(0.5) → Dense(10, softmax);  Adam(1e-3), batch 128

Both run the same model on the same 60,000 images with the same thread count
(fromzero NHWC, PyTorch its native NCHW with softmax folded into the loss).

    python bench/cnn_epoch.py --threads 2 [--epochs 1] [--skip-torch]
"""

import argparse
import time

import numpy as np

import fromzero as fz
from fromzero import cli


def time_fromzero(x, y, epochs, batch_size):
    fz.utils.set_random_seed(0)
    model = cli.build_model("cnn")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x[..., None], y, batch_size=batch_size, epochs=epochs, verbose=0)
    return (time.perf_counter() - start) / epochs, history.history["loss"][-1]


def time_torch(x, y, epochs, batch_size, threads):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(64 * 5 * 5, 10))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    xs = torch.from_numpy(x[:, None])  # (N, 1, 28, 28)
    ys = torch.from_numpy(y.astype(np.int64))
    generator = torch.Generator().manual_seed(0)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(xs), generator=generator)
        total = 0.0
        for i in range(0, len(xs), batch_size):
            index = order[i:i + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xs[index]), ys[index])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
    return (time.perf_counter() - start) / epochs, total / len(xs)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--skip-torch", action="store_true")
    args = parser.parse_args()
    fz.set_num_threads(args.threads)
    (x, y), _ = fz.datasets.mnist.load_data()
    x = (x / 255.0).astype(np.float32)
    print(f"mnist_convnet, {len(x)} images, batch {args.batch_size}, {args.threads} thread(s), "
          f"{fz.info()['simd']} GEMM")
    seconds, loss = time_fromzero(x, y, args.epochs, args.batch_size)
    print(f"fromzero: {seconds:.2f} s/epoch (last epoch loss {loss:.4f})")
    if not args.skip_torch:
        seconds, loss = time_torch(x, y, args.epochs, args.batch_size, args.threads)
        print(f"pytorch:  {seconds:.2f} s/epoch (last epoch loss {loss:.4f})")


if __name__ == "__main__":
    main()
