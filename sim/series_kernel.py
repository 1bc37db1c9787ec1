"""A fused CPU trainer for the series model (numba): each instance's whole loop in one compiled kernel.

The same model, data law, objective and optimiser as sim.series's torch loop
(theory.series: a d-dim stream through L blocks of k ReLU units, each block
dropped with p_block, each unit with p_unit; the objective is each instance's
batch-mean loss over n, AdamW with torch's update and weight decay on every
parameter); only the arithmetic is organised differently. The torch loop
streams (instances, batch, width) tensors through about 10 L small batched
products per step; here one sample at a time lives in a few small arrays:

- per sample, one uniform per feature decides activity and value
  (x_i = u / P_i if u < P_i, the law of sim.fused); then, block by block, one
  uniform for the block's mask (when p_block > 0) and one per unit (when
  p_unit > 0);
- forward (the stream before every block, the units' pre-activations and
  kept activations), then backward by hand (the adjoint of the residual
  recursion), all in float64; AdamW in float64 (sim.kernel_run.adamw).

Randomness: SplitMix64 (sim.splitmix), one stream per instance seeded from
(seed, the instance's index): an instance's run depends only on its seed,
index and setup, never on the thread count. The stream differs from the
torch loop's, the law of every batch does not (tests/sim/test_series_kernel.py
holds the two against each other and against theory.series's Monte Carlo).

Parameters travel as one flat float64 vector per instance in the order of
sim.series's names (E, R, c, U, O, b), each C-ordered in its SeriesSetup.shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from sim.kernel_run import adamw
from sim.splitmix import seed_states, uniform

#: The parameters' order in the flat vector (sim.series's).
NAMES = ("E", "R", "c", "U", "O", "b")


def flatten(params: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    """(instances, P) float64: each instance's parameters in NAMES order, C-ordered."""
    instances = len(next(iter(params.values())))
    parts = [np.asarray(params[name], dtype=np.float64).reshape(instances, -1) for name in NAMES]
    out = np.ascontiguousarray(np.concatenate(parts, axis=1))
    expected = sum(int(np.prod(shapes[name])) for name in NAMES)
    if out.shape[1] != expected:
        raise ValueError(f"{out.shape[1]} parameters per instance; the shapes hold {expected}")
    return out


def unflatten(theta: np.ndarray, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """flatten's inverse: name -> (instances, *shape)."""
    out, start = {}, 0
    for name in NAMES:
        size = int(np.prod(shapes[name]))
        out[name] = theta[:, start : start + size].reshape(len(theta), *shapes[name]).copy()
        start += size
    return out


def setup_arrays(setups):
    """The kernels' per-instance inputs: density, 1 / density (0 where 0), importance (I, n);
    keep_block = 1 - p_block, keep_unit = 1 - p_unit (I,)."""
    density = np.array([s.density for s in setups], dtype=np.float64)
    inv_density = np.divide(1.0, density, out=np.zeros_like(density), where=density > 0)
    importance = np.array([s.importance_array for s in setups], dtype=np.float64)
    keep_block = np.array([1.0 - s.p_block for s in setups], dtype=np.float64)
    keep_unit = np.array([1.0 - s.p_unit for s in setups], dtype=np.float64)
    return density, inv_density, importance, keep_block, keep_unit


@nb.njit(cache=True)
def _batch(theta, grad, dims, direct, density, inv_density, importance, keep_block, keep_unit, batch, state):
    """One batch at theta: the gradient of (batch-mean loss) / n into grad; returns (state, batch loss).

    The loss is the batch mean of the importance-weighted sum over features.
    """
    n, d, L, k = dims[0], dims[1], dims[2], dims[3]
    oR = d * n
    oc = oR + L * k * d
    oU = oc + L * k
    oO = oU + L * d * k
    ob = oO + n * d
    x = np.empty(n)
    S = np.empty((L + 1, d))  # the stream before block l (S[0] = E x), and after the last
    Z = np.empty((L, k))  # pre-activations
    A = np.empty((L, k))  # kept activations, unit-scaled
    M = np.ones((L, k))  # unit scale: 1 / keep_unit or 0
    B = np.ones(L)  # block scale: 1 / keep_block or 0
    read = np.empty(d)
    gs = np.empty(d)
    gread = np.empty(d)
    gnext = np.empty(d)
    gA = np.empty(k)
    for q in range(grad.size):
        grad[q] = 0.0
    inv_block = 1.0 / keep_block
    inv_unit = 1.0 / keep_unit
    drop_blocks = keep_block < 1.0
    drop_units = keep_unit < 1.0
    total = 0.0
    for _ in range(batch):
        for j in range(n):
            state, u = uniform(state)
            x[j] = u * inv_density[j] if u < density[j] else 0.0
        for a in range(d):
            acc = 0.0
            for j in range(n):
                acc += theta[a * n + j] * x[j]
            S[0, a] = acc
        for layer in range(L):
            if drop_blocks:
                state, u = uniform(state)
                B[layer] = inv_block if u < keep_block else 0.0
            for q in range(k):
                z = theta[oc + layer * k + q]
                row = oR + (layer * k + q) * d
                for a in range(d):
                    z += theta[row + a] * S[layer, a]
                Z[layer, q] = z
                if drop_units:
                    state, u = uniform(state)
                    M[layer, q] = inv_unit if u < keep_unit else 0.0
                A[layer, q] = M[layer, q] * z if z > 0.0 else 0.0
            scale = B[layer]
            for a in range(d):
                acc = 0.0
                if scale != 0.0:
                    row = oU + (layer * d + a) * k
                    for q in range(k):
                        acc += theta[row + q] * A[layer, q]
                S[layer + 1, a] = S[layer, a] + scale * acc
        for a in range(d):
            read[a] = S[L, a] if direct else S[L, a] - S[0, a]
            gread[a] = 0.0
        for i in range(n):
            y = theta[ob + i]
            for a in range(d):
                y += theta[oO + i * d + a] * read[a]
            e = y - x[i] if y > 0.0 else -x[i]
            total += importance[i] * e * e
            if y > 0.0:
                g = importance[i] * e
                grad[ob + i] += g
                for a in range(d):
                    grad[oO + i * d + a] += g * read[a]
                    gread[a] += theta[oO + i * d + a] * g
        for a in range(d):
            gs[a] = gread[a]
        for layer in range(L - 1, -1, -1):
            scale = B[layer]
            if scale == 0.0:
                continue  # a dropped block passes the gradient through unchanged
            for a in range(d):
                gnext[a] = 0.0
            for q in range(k):
                acc = 0.0
                for a in range(d):
                    acc += theta[oU + (layer * d + a) * k + q] * gs[a]
                gA[q] = scale * acc
            for a in range(d):
                row = oU + (layer * d + a) * k
                for q in range(k):
                    grad[row + q] += scale * gs[a] * A[layer, q]
            for q in range(k):
                if Z[layer, q] > 0.0 and M[layer, q] != 0.0:
                    gz = gA[q] * M[layer, q]
                    grad[oc + layer * k + q] += gz
                    row = oR + (layer * k + q) * d
                    for a in range(d):
                        grad[row + a] += gz * S[layer, a]
                        gnext[a] += theta[row + a] * gz
            for a in range(d):
                gs[a] += gnext[a]
        if not direct:
            for a in range(d):
                gs[a] -= gread[a]
        for a in range(d):
            for j in range(n):
                if x[j] != 0.0:
                    grad[a * n + j] += gs[a] * x[j]
    weight = 2.0 / (batch * n)
    for q in range(grad.size):
        grad[q] *= weight
    return state, total / batch


@nb.njit(parallel=True, cache=True)
def train_block(
    theta, exp_avg, exp_sq, states, dims, direct, density, inv_density, importance, keep_block, keep_unit,
    first, last, batch, lr, weight_decay, beta1, beta2, eps, log_slot, history,
):  # fmt: skip
    """Steps first..last-1 (0-based) of every instance, in place; a logged step's batch loss into
    history[instance, log_slot[step]]."""
    instances, size = theta.shape
    for inst in nb.prange(instances):
        grad = np.empty(size)
        state = states[inst]
        for t in range(first, last):
            state, loss = _batch(
                theta[inst], grad, dims, direct, density[inst], inv_density[inst], importance[inst],
                keep_block[inst], keep_unit[inst], batch, state,
            )  # fmt: skip
            if log_slot[t] >= 0:
                history[inst, log_slot[t]] = loss
            adamw(theta[inst], grad, exp_avg[inst], exp_sq[inst], t + 1, lr, weight_decay, beta1, beta2, eps)
        states[inst] = state


@nb.njit(parallel=True, cache=True)
def gradients(
    theta, states, dims, direct, density, inv_density, importance, keep_block, keep_unit, batch, batches,
    out_grad, out_loss,
):  # fmt: skip
    """`batches` batches per instance at fixed theta: each batch's gradient and loss."""
    instances, size = theta.shape
    for inst in nb.prange(instances):
        grad = np.empty(size)
        state = states[inst]
        for t in range(batches):
            state, loss = _batch(
                theta[inst], grad, dims, direct, density[inst], inv_density[inst], importance[inst],
                keep_block[inst], keep_unit[inst], batch, state,
            )  # fmt: skip
            out_grad[inst, t] = grad
            out_loss[inst, t] = loss
        states[inst] = state


def dims_of(setup) -> np.ndarray:
    """(n, d, L, k) as the kernels take them."""
    return np.array([setup.n_features, setup.stream, setup.blocks, setup.units], dtype=np.int64)


@dataclass(frozen=True)
class Batches:
    """Per-batch gradients of the objective, name -> (instances, batches, *shape), and batch losses
    (instances, batches)."""

    grad: dict[str, np.ndarray]
    loss: np.ndarray


def batch_gradients(
    setups, params: dict[str, np.ndarray], *, batch: int, batches: int, seed: int = 0
) -> Batches:
    """Per-batch gradients and losses at fixed parameters from the kernel's own samples: the same seed
    gives the same samples."""
    shapes = setups[0].shapes
    theta = flatten(params, shapes)
    instances, size = theta.shape
    out_grad = np.empty((instances, batches, size))
    out_loss = np.empty((instances, batches))
    gradients(
        theta, seed_states(seed, instances), dims_of(setups[0]), bool(setups[0].direct),
        *setup_arrays(setups), int(batch), int(batches), out_grad, out_loss,
    )  # fmt: skip
    grads = unflatten(out_grad.reshape(instances * batches, size), shapes)
    return Batches({k: v.reshape(instances, batches, *shapes[k]) for k, v in grads.items()}, out_loss)
