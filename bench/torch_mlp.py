"""The textbook MLP in idiomatic PyTorch: the reference a learner already knows.

    nn.Sequential(Linear(784, 128), ReLU(), Linear(128, 10))
    CrossEntropyLoss on the logits (softmax folded into the loss)
    torch.optim.Adam(lr=1e-3, eps=1e-7)   (eps as Keras's default)

The data sits in two tensors and each epoch slices minibatches out of a
shuffled index tensor: no DataLoader, whose per-sample collation would be
the slowest part of an epoch this small.
"""

import numpy as np
import torch
from torch import nn


class TorchMLP:
    def __init__(self, inputs=784, hidden=128, classes=10, learning_rate=1e-3, seed=0):
        self.generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # the layers' default initialisation
        self.model = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, classes))
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=learning_rate, eps=1e-7)

    def fit_epoch(self, x, y, batch_size):
        """One pass over (x, y) in shuffled minibatches; returns the mean loss.

        x: float32 (N, 784) and y: int64 (N,) tensors (see as_tensors).
        """
        self.model.train()
        order = torch.randperm(len(x), generator=self.generator)
        total = 0.0
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            xb, yb = x[index], y[index]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(xb), yb)
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(index)
        return total / len(x)

    @torch.no_grad()
    def predict(self, x):
        self.model.eval()
        return self.model(x).numpy()


def as_tensors(x, y):
    """NumPy data as PyTorch wants it: x shares memory, labels become int64."""
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
