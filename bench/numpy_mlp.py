"""The textbook MLP written in plain NumPy: the baseline fromzero is measured against.

    784 → Dense(128, relu) → Dense(10, softmax), sparse cross-entropy, Adam

Written the way a competent NumPy programmer would: matrix products go to
BLAS through ``np.matmul``, every elementwise step writes into a buffer
allocated once per batch shape (``out=``), and the softmax + cross-entropy
gradient is the fused ``(p − onehot) / batch``. Same initialisation (Glorot
uniform, zero biases) and the same Adam formulas as fromzero and Keras.
"""

import numpy as np


def softmax_cross_entropy(logits, labels, grad):
    """Mean sparse cross-entropy of softmax(logits); writes ∂loss/∂logits into grad.

    Stable: the row maximum is subtracted before exp (log-sum-exp).
    """
    rows = np.arange(len(logits))
    row_max = logits.max(axis=1, keepdims=True)
    np.subtract(logits, row_max, out=grad)
    picked = grad[rows, labels]  # z_y − max, before grad is overwritten
    np.exp(grad, out=grad)
    row_sum = grad.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(row_sum[:, 0]) - picked))
    grad /= row_sum               # softmax p
    grad[rows, labels] -= 1.0     # p − onehot
    grad /= len(logits)
    return loss


class Adam:
    """Keras's Adam, in place with one scratch array per parameter:

        m ← m + (g − m)(1−β1),  v ← v + (g² − v)(1−β2),
        θ ← θ − α √(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)
    """

    def __init__(self, params, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        self.learning_rate, self.beta_1, self.beta_2, self.epsilon = (
            learning_rate, beta_1, beta_2, epsilon)
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.scratch = [np.empty_like(p) for p in params]
        self.iterations = 0

    def apply_gradients(self, grads, params):
        self.iterations += 1
        t = self.iterations
        step = self.learning_rate * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        for g, p, m, v, s in zip(grads, params, self.m, self.v, self.scratch):
            np.subtract(g, m, out=s)
            s *= 1 - self.beta_1
            m += s                      # m ← m + (g − m)(1−β1)
            np.square(g, out=s)
            s -= v
            s *= 1 - self.beta_2
            v += s                      # v ← v + (g² − v)(1−β2)
            np.sqrt(v, out=s)
            s += self.epsilon
            np.divide(m, s, out=s)
            s *= step
            p -= s                      # θ ← θ − step · m / (√v + ε)


def glorot_uniform(rng, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)


class NumpyMLP:
    """Input → Dense(hidden, relu) → Dense(classes, softmax), trained with Adam."""

    def __init__(self, inputs=784, hidden=128, classes=10, learning_rate=1e-3, seed=0):
        self.rng = np.random.default_rng(seed)
        self.w1 = glorot_uniform(self.rng, inputs, hidden)
        self.b1 = np.zeros(hidden, np.float32)
        self.w2 = glorot_uniform(self.rng, hidden, classes)
        self.b2 = np.zeros(classes, np.float32)
        self.params = [self.w1, self.b1, self.w2, self.b2]
        self.grads = [np.zeros_like(p) for p in self.params]
        self.optimizer = Adam(self.params, learning_rate)
        self._buffers = {}  # batch size → the arrays one step writes

    def _batch_buffers(self, batch):
        if batch not in self._buffers:
            def empty(cols):
                return np.empty((batch, cols), np.float32)
            self._buffers[batch] = dict(x=empty(self.w1.shape[0]), h=empty(self.w1.shape[1]),
                                        logits=empty(self.w2.shape[1]),
                                        dlogits=empty(self.w2.shape[1]),
                                        dh=empty(self.w1.shape[1]))
        return self._buffers[batch]

    def forward(self, x, buf):
        """Logits of the batch x; the hidden activations stay in buf["h"]."""
        h, logits = buf["h"], buf["logits"]
        np.matmul(x, self.w1, out=h)
        h += self.b1
        np.maximum(h, 0, out=h)              # relu
        np.matmul(h, self.w2, out=logits)
        logits += self.b2
        return logits

    def train_step(self, x, labels, buf):
        """Forward, loss, backward, Adam for one batch; returns the mean loss."""
        logits = self.forward(x, buf)
        dlogits, h, dh = buf["dlogits"], buf["h"], buf["dh"]
        loss = softmax_cross_entropy(logits, labels, dlogits)
        dw1, db1, dw2, db2 = self.grads
        np.matmul(h.T, dlogits, out=dw2)     # dW2 = hᵀ · dlogits
        np.sum(dlogits, axis=0, out=db2)
        np.matmul(dlogits, self.w2.T, out=dh)
        dh[h <= 0] = 0                       # relu': pass the gradient where h > 0
        np.matmul(x.T, dh, out=dw1)          # dW1 = xᵀ · dh
        np.sum(dh, axis=0, out=db1)
        self.optimizer.apply_gradients(self.grads, self.params)
        return loss

    def fit_epoch(self, x, y, batch_size):
        """One pass over (x, y) in shuffled minibatches; returns the mean loss."""
        order = self.rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            buf = self._batch_buffers(len(index))
            xb = np.take(x, index, axis=0, out=buf["x"])
            total += self.train_step(xb, y[index], buf) * len(index)
        return total / len(x)

    def predict(self, x, batch_size=1000):
        """Class scores (logits; their argmax is the softmax's) for every row of x."""
        out = np.empty((len(x), self.w2.shape[1]), np.float32)
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            out[start:start + len(xb)] = self.forward(xb, self._batch_buffers(len(xb)))
        return out
