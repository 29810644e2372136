"""Testing tools: the finite-difference gradient check that verifies every
layer, loss and model's backward pass against the definition of a derivative."""

import numpy as np

from . import utils


def _as_list(structure):
    if isinstance(structure, dict):
        return list(structure.values())
    return list(structure) if isinstance(structure, (list, tuple)) else [structure]


def check_gradients(target, x, y_true=None, epsilon=1e-3, seed=0):
    """Compare analytic gradients with central finite differences.

    ``target`` is a layer, a model, or a loss. For a loss, ``x`` is
    ``y_pred`` and ``y_true`` the targets. For a layer or a model ``x`` is
    its input — an array, or a list of arrays for a layer or model with
    several inputs — and the scalar checked is

        L = Σ_k Σ output_k · r_k + penalty

    for fixed random r_k (penalty: the weight regularization, if any), so
    backward(r) must return ∂L/∂inputs and fill the grads with ∂L/∂params
    (the trainable ones; a frozen layer's all). Each derivative is also estimated as
    (L(θ + ε) − L(θ − ε)) / 2ε, in float64 sums of float32 kernels. Integer
    inputs (token ids) are not differentiated.

    Returns {name: relative error ‖analytic − numeric‖ / (‖analytic‖ + ‖numeric‖)},
    with names "x" (or "x_0", "x_1", ... for several inputs) and "param_0",
    "param_1", ... (or "y_pred" for a loss). Errors below ~1e-2 are float32
    rounding; a wrong gradient gives ~1.
    """
    rng = np.random.default_rng(seed)
    # Stochastic layers (Dropout) must draw the same randomness at every
    # evaluation, so the generator they draw from is rewound before each one.
    gen = utils.generator()
    start_state = gen.bit_generator.state
    if hasattr(target, "gradient") and not hasattr(target, "backward"):  # a loss
        pred = np.array(x, dtype=np.float32)

        def objective():
            return float(target(y_true, pred))
        analytic = {"y_pred": np.asarray(target.gradient(y_true, pred), dtype=np.float64)}
        arrays = {"y_pred": pred}
    else:
        analytic, arrays, objective = _layer_or_model(target, x, rng, gen, start_state)
    report = {}
    for name, arr in arrays.items():
        numeric = np.zeros(arr.shape, dtype=np.float64)
        flat, out = arr.reshape(-1), numeric.reshape(-1)
        for i in range(flat.size):
            saved = flat[i]
            flat[i] = saved + epsilon
            plus = objective()
            flat[i] = saved - epsilon
            minus = objective()
            flat[i] = saved
            out[i] = (plus - minus) / (2 * epsilon)
        a = analytic[name]
        denom = np.linalg.norm(a) + np.linalg.norm(numeric)
        report[name] = 0.0 if denom == 0 else float(np.linalg.norm(a - numeric) / denom)
    return report


def _layer_or_model(target, x, rng, gen, start_state):
    from .models import Model  # testing is imported by fromzero/__init__ before models

    several = isinstance(x, (list, tuple))
    xs = [np.array(v, dtype=np.float32) if np.asarray(v).dtype.kind == "f" else np.array(v)
          for v in (x if several else [x])]
    model = isinstance(target, Model)
    # The weights backward gives gradients for: a model's trainable ones, a
    # layer's trainable ones (not the kernel LoRA freezes), or a frozen layer's
    # all (BatchNormalization still reports them).
    own = model or target.trainable
    params = target.trainable_params if own else target.params
    grads = (lambda: target.trainable_grads) if own else (lambda: target.grads)
    penalty = getattr(target, "regularization_loss", lambda: 0.0)

    def forward():
        gen.bit_generator.state = start_state
        return _as_list(target.forward(xs if several else xs[0], training=True))

    r = [rng.standard_normal(np.shape(y)).astype(np.float32) for y in forward()]

    def objective():
        return sum(float(np.sum(y.astype(np.float64) * ri)) for y, ri in zip(forward(), r)) + \
            penalty()

    before = target.input_grad_needed
    target.input_grad_needed = True
    try:
        objective()
        outputs = target.outputs if model else None
        dy = r[0] if (not model and len(r) == 1) or (model and len(outputs) == 1) else r
        if model and isinstance(target.output, dict):
            dy = dict(zip(target.output, r))
        dx = target.backward(dy)
    finally:
        target.input_grad_needed = before
    dx = list(dx) if several else [dx]
    names = ["x"] if not several else [f"x_{i}" for i in range(len(xs))]
    analytic, arrays = {}, {}
    for name, value, g in zip(names, xs, dx):
        if value.dtype.kind == "f":
            analytic[name] = np.array(g, dtype=np.float64)
            arrays[name] = value
    for i, (p, g) in enumerate(zip(params, grads())):
        analytic[f"param_{i}"] = np.array(g, dtype=np.float64)
        arrays[f"param_{i}"] = p
    return analytic, arrays, objective
