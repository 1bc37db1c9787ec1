"""A fused CPU trainer for the series model (numba): each instance's whole loop in one compiled kernel.

The same model, data law, objective and optimiser as sim.series's torch loop
(theory.series: a d-dim stream through L blocks of k ReLU units, each block
dropped with p_block, each unit with p_unit; the objective is each instance's
batch-mean loss over n, AdamW with torch's update and weight decay on every
parameter); only the arithmetic is organised differently. The torch loop
streams (instances, batch, width) tensors through about 10 L small batched
products per step; here one sample at a time lives in scalar locals (the batch function is generated
for each shape, every loop over features, stream dimensions, blocks and units unrolled):

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
SeriesSetup.shapes (E, R, c, U, O, b), each C-ordered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.kernel_run import load_generated
from sim.splitmix import seed_states


def flatten(params: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    """(instances, P) float64: each instance's parameters in the order of `shapes` (SeriesSetup.shapes:
    E, R, c, U, O, b), each C-ordered."""
    instances = len(next(iter(params.values())))
    parts = [np.asarray(params[name], dtype=np.float64).reshape(instances, math.prod(shape))
             for name, shape in shapes.items()]  # fmt: skip
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def unflatten(theta: np.ndarray, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """flatten's inverse: name -> (instances, *shape)."""
    out, start = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        out[name] = theta[:, start : start + size].reshape(len(theta), *shape).copy()
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


def _batch_source(n: int, d: int, L: int, k: int, direct: bool) -> str:  # noqa: E741 (blocks)
    """Source of `batch(theta, grad, density, inv_density, importance, keep_block, keep_unit, batch,
    state)` for one shape: the gradient of (batch-mean loss) / n into grad; returns (state, batch loss),
    the loss being the batch mean of the importance-weighted sum over features.

    Every loop over features, stream dimensions, blocks and units is unrolled into scalar locals (as
    sim.fused does): a generic loop over such small arrays runs about 2x slower. A dropped block or
    unit is a zero scale, not a branch.
    """
    F, D, B, K = range(n), range(d), range(L), range(k)
    index = iter(range(d * n + L * k * d + L * k + L * d * k + n * d + n))
    names = (
        [f"E{a}_{j}" for a in D for j in F]
        + [f"R{h}_{q}_{a}" for h in B for q in K for a in D]
        + [f"c{h}_{q}" for h in B for q in K]
        + [f"U{h}_{a}_{q}" for h in B for a in D for q in K]
        + [f"O{i}_{a}" for i in F for a in D]
        + [f"b{i}" for i in F]
    )  # the flat vector's order (SeriesSetup.shapes', each C-ordered)
    slots = {name: next(index) for name in names}
    out = ["def batch(theta, grad, density, inv_density, importance, keep_block, keep_unit, batch, state):"]
    put = out.append
    for name in names:
        put(f"    {name} = theta[{slots[name]}]; g{name} = 0.0")
    for j in F:
        put(f"    d{j} = density[{j}]; id{j} = inv_density[{j}]; I{j} = importance[{j}]")
    put("    inv_block = 1.0 / keep_block")
    put("    inv_unit = 1.0 / keep_unit")
    put("    drop_blocks = keep_block < 1.0")
    put("    drop_units = keep_unit < 1.0")
    put("    total = 0.0")
    put("    for _ in range(batch):")
    for j in F:
        put("        state, u = _uniform(state)")
        put(f"        x{j} = u * id{j} if u < d{j} else 0.0")
    for a in D:
        put(f"        s0_{a} = " + " + ".join(f"E{a}_{j} * x{j}" for j in F))
    for h in B:
        put(f"        B{h} = 1.0")
        put("        if drop_blocks:")
        put("            state, u = _uniform(state)")
        put(f"            B{h} = inv_block if u < keep_block else 0.0")
        for q in K:
            put(f"        z{h}_{q} = c{h}_{q} + " + " + ".join(f"R{h}_{q}_{a} * s{h}_{a}" for a in D))
            put(f"        M{h}_{q} = 1.0")
            put("        if drop_units:")
            put("            state, u = _uniform(state)")
            put(f"            M{h}_{q} = inv_unit if u < keep_unit else 0.0")
            put(f"        A{h}_{q} = M{h}_{q} * z{h}_{q} if z{h}_{q} > 0.0 else 0.0")
        for a in D:
            put(
                f"        s{h + 1}_{a} = s{h}_{a} + B{h} * ("
                + " + ".join(f"U{h}_{a}_{q} * A{h}_{q}" for q in K)
                + ")"
            )
    for a in D:
        put(f"        r{a} = s{L}_{a}" + ("" if direct else f" - s0_{a}"))
    for i in F:
        put(f"        y{i} = b{i} + " + " + ".join(f"O{i}_{a} * r{a}" for a in D))
        put(f"        e{i} = y{i} - x{i} if y{i} > 0.0 else -x{i}")
        put(f"        total += I{i} * e{i} * e{i}")
        put(f"        gy{i} = I{i} * e{i} if y{i} > 0.0 else 0.0")
        put(f"        gb{i} += gy{i}")
        for a in D:
            put(f"        gO{i}_{a} += gy{i} * r{a}")
    for a in D:
        put(f"        t{L}_{a} = " + " + ".join(f"O{i}_{a} * gy{i}" for i in F))
    for h in reversed(B):  # the adjoint of s_{l+1} = s_l + B_l U_l A_l(s_l): t_l from t_{l+1}
        for q in K:
            put(f"        gA{h}_{q} = B{h} * (" + " + ".join(f"U{h}_{a}_{q} * t{h + 1}_{a}" for a in D) + ")")
            for a in D:
                put(f"        gU{h}_{a}_{q} += B{h} * t{h + 1}_{a} * A{h}_{q}")
            put(f"        gz{h}_{q} = gA{h}_{q} * M{h}_{q} if z{h}_{q} > 0.0 else 0.0")
            put(f"        gc{h}_{q} += gz{h}_{q}")
            for a in D:
                put(f"        gR{h}_{q}_{a} += gz{h}_{q} * s{h}_{a}")
        for a in D:
            put(f"        t{h}_{a} = t{h + 1}_{a} + " + " + ".join(f"R{h}_{q}_{a} * gz{h}_{q}" for q in K))
    for a in D:
        if not direct:  # read = s_L - s_0: the readout's adjoint t_L also reaches s_0 directly, negated
            put(f"        t0_{a} = t0_{a} - t{L}_{a}" if L else f"        t0_{a} = 0.0")
        for j in F:
            put(f"        gE{a}_{j} += t0_{a} * x{j}")
    put(f"    weight = 2.0 / (batch * {n})")
    for name in names:
        put(f"    grad[{slots[name]}] = weight * g{name}")
    put("    return state, total / batch")
    return "\n".join(out) + "\n"


_HEADER = """# Generated by sim.series_kernel for one series shape; numba caches it beside this file.
import numba as nb
import numpy as np

from sim.kernel_run import adamw
from sim.splitmix import uniform as _uniform


@nb.njit(cache=True)  # not inlined: compiled once for both loops
"""

#: The per-instance loops around the generated `batch`.
_LOOPS = """

@nb.njit(parallel=True, cache=True)
def train_block(
    theta, exp_avg, exp_sq, states, density, inv_density, importance, keep_block, keep_unit, first, last,
    batch_size, lr, weight_decay, beta1, beta2, eps, log_slot, history,
):
    # Steps first..last-1 (0-based) of every instance, in place; a logged step's batch loss into
    # history[instance, log_slot[step]].
    instances, size = theta.shape
    for inst in nb.prange(instances):
        grad = np.empty(size)
        state = states[inst]
        for t in range(first, last):
            state, loss = batch(
                theta[inst], grad, density[inst], inv_density[inst], importance[inst], keep_block[inst],
                keep_unit[inst], batch_size, state,
            )
            if log_slot[t] >= 0:
                history[inst, log_slot[t]] = loss
            adamw(theta[inst], grad, exp_avg[inst], exp_sq[inst], t + 1, lr, weight_decay, beta1, beta2, eps)
        states[inst] = state


@nb.njit(parallel=True, cache=True)
def gradients(
    theta, states, density, inv_density, importance, keep_block, keep_unit, batch_size, batches, out_grad,
    out_loss,
):
    # `batches` batches per instance at fixed theta: each batch's gradient and loss.
    instances, size = theta.shape
    for inst in nb.prange(instances):
        grad = np.empty(size)
        state = states[inst]
        for t in range(batches):
            state, loss = batch(
                theta[inst], grad, density[inst], inv_density[inst], importance[inst], keep_block[inst],
                keep_unit[inst], batch_size, state,
            )
            out_grad[inst, t] = grad
            out_loss[inst, t] = loss
        states[inst] = state
"""

_KERNELS: dict[tuple, object] = {}


def kernels(setup):
    """The compiled module (train_block, gradients) for the setup's shape: generated, compiled once and
    cached on disk (the first use of a shape compiles for about 5-15 s; later processes load the cache)."""
    key = (setup.n_features, setup.stream, setup.blocks, setup.units, bool(setup.direct))
    if key not in _KERNELS:
        n, d, L, k, direct = key  # noqa: E741 (blocks)
        name = f"series_{n}x{d}_{L}x{k}" + ("" if direct else "_indirect")
        source = _HEADER + _batch_source(*key) + _LOOPS
        _KERNELS[key] = load_generated(name, source, ("sim.kernel_run", "sim.splitmix"))
    return _KERNELS[key]


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
    kernels(setups[0]).gradients(
        theta, seed_states(seed, instances), *setup_arrays(setups), int(batch), int(batches), out_grad,
        out_loss,
    )  # fmt: skip
    grads = unflatten(out_grad.reshape(instances * batches, size), shapes)
    return Batches({k: v.reshape(instances, batches, *shapes[k]) for k, v in grads.items()}, out_loss)
