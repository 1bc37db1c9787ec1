"""A fused CPU trainer for small models (numba): each instance's whole loop in one compiled kernel.

The same model, data law, objective and optimiser as sim.trainer (docs/model.md
section 2, the TMS notebook's loop: batch mean of the per-feature mean of
I_i (x_i - x'_i)^2, AdamW with torch's update, weight decay on W and b);
only the arithmetic is organised differently. For small n and m the batched
torch trainer spends its time streaming (instances, features, batch)
tensors through memory; here every sample lives in registers:

- per sample, one uniform per feature decides activity and value
  (x_i = u / P_i if u < P_i, as sim.trainer does);
- a sample with no active feature has h = 0 for every dropout mask, so its
  output is ReLU(b): such samples are counted, not computed, and their mask
  is not drawn. At density 0.01 that skips 98% of the batch;
- dropout draws one uniform per hidden unit for the other samples;
- forward, backward and AdamW in float64.

Randomness: SplitMix64, one stream per instance, seeded from (seed, the
instance's index): the numbers do not depend on the thread count, and an
instance's run depends only on its seed, index and setup. The stream differs
from sim.trainer's (SFC64 batches), the distribution of every batch does not.

Use it through sim.trainer.train(..., backend="fused"); `backend="auto"`
picks it on CPU for models with n * m <= FUSED_MAX_SIZE (2 features in 1
dim, the phase-diagram workload), and sim.tiled above. FusedRun and
batch_gradients also drive sim.tiled's kernels, which take the same arguments.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import tempfile
from pathlib import Path

import numba as nb
import numpy as np

from theory import storage

#: Largest n_features * n_hidden for which backend="auto" takes the fused kernel on CPU; larger models
#: take sim.tiled. Measured on 2 cores, 2 in 1, 2,000 instances: densities uniform on [0.01, 1]
#: (benchmarks/trainer_speed.py) fused 0.3x tiled; log-uniform on [0.01, 1] 0.5x; log-uniform on
#: [0.001, 0.01] 8-11x (it skips the empty samples, tiled computes them). 5 in 2: fused 0.05x tiled.
#: Kept at 2 so that the 2-in-1 comparison sweeps (log-spaced densities down to 0.01) keep their stream.
FUSED_MAX_SIZE = 2

#: A batch whose samples are empty (no active feature) with probability above this skips them
#: (geometric gaps) instead of drawing every feature of every sample.
SPARSE_ABOVE = 0.5
#: setup_arrays' mode: how a batch's empty samples are drawn.
DENSE, SPARSE, NEVER = 0, 1, 2

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_UNIT = 2.0**-53


@nb.njit(inline="always")
def _uniform(state):
    """SplitMix64: (next state, a uniform double on [0, 1) from the top 53 bits)."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return state, float(z >> _S11) * _UNIT


@nb.njit(inline="always")
def adamw(params, grad, exp_avg, exp_sq, step, lr, weight_decay, beta1, beta2, eps):
    """torch.optim.AdamW's single-tensor update on flat float64 arrays, step count `step` (from 1)."""
    c1 = 1.0 - beta1**step
    c2 = math.sqrt(1.0 - beta2**step)
    decay = 1.0 - lr * weight_decay
    for q in range(params.size):
        g = grad[q]
        exp_avg[q] += (1.0 - beta1) * (g - exp_avg[q])
        exp_sq[q] = beta2 * exp_sq[q] + (1.0 - beta2) * g * g
        params[q] = params[q] * decay - lr / c1 * exp_avg[q] / (math.sqrt(exp_sq[q]) / c2 + eps)


@nb.njit(inline="always")
def finish_step(
    inst, t, loss, gW, gb, W, b, exp_avg_W, exp_avg_b, exp_sq_W, exp_sq_b, lr, weight_decay, beta1, beta2,
    eps, log_slot, history, threshold, snap_W, snap_b, snap_step,
):  # fmt: skip
    """After step t's batch of instance inst: log its loss (and snapshot W, b), then AdamW on W and b.

    Shared by the train_block kernels of sim.fused and sim.tiled.
    """
    Wi, bi = W[inst], b[inst]
    size = Wi.size
    slot = log_slot[t]
    if slot >= 0:
        history[inst, slot] = loss
        if snap_step[inst] < 0 and loss <= threshold[inst]:
            snap_W[inst] = Wi
            snap_b[inst] = bi
            snap_step[inst] = t
    adamw(Wi.reshape(size), gW.reshape(size), exp_avg_W[inst].reshape(size), exp_sq_W[inst].reshape(size),
          t + 1, lr, weight_decay, beta1, beta2, eps)  # fmt: skip
    adamw(bi, gb, exp_avg_b[inst], exp_sq_b[inst], t + 1, lr, weight_decay, beta1, beta2, eps)


def _batch_source(n: int, m: int) -> str:
    """Source of `batch(W, b, density, inv_density, importance, keep, batch, state, gW, gb)` for (n, m).

    Every loop over features and hidden units is unrolled into scalar locals,
    so the per-sample work stays in registers (a generic loop over small
    arrays runs about 2x slower: the compiler cannot rule out aliasing).
    It returns (state, batch loss): the loss is the batch mean of the
    importance-weighted sum over features (docs/model.md, the loss L); gW, gb receive the
    gradient of the TMS objective, L / n.
    """
    F, H = range(n), range(m)
    out = [
        "def batch(W, b, density, inv_density, importance, keep, mode, inv_log_empty, first_cdf, batch,"
        " state, gW, gb):"
    ]
    put = out.append
    for k in H:
        put("    " + "; ".join(f"W{k}_{j} = W[{k}, {j}]" for j in F))
    for j in F:
        put(f"    b{j} = b[{j}]; d{j} = density[{j}]; id{j} = inv_density[{j}]; I{j} = importance[{j}]")
    put("    " + "; ".join(f"gW{k}_{j} = 0.0" for k in H for j in F))
    put("    " + "; ".join(f"gb{j} = 0.0" for j in F))
    put("    total = 0.0")
    put("    empty = 0")
    put("    dropout = keep < 1.0")
    put("    inv_keep = 1.0 / keep")
    put("    sparse = mode != DENSE")
    put("    never = mode == NEVER")
    put("    done = 0")
    put("    while done < batch:")
    put("        if sparse:  # skip the empty samples: their number before the next non-empty is geometric")
    put("            if never:")
    put("                empty += batch - done")
    put("                break")
    put("            state, u = _uniform(state)")
    put("            skip = int(math.log1p(-u) * inv_log_empty)")
    put("            if skip >= batch - done:")
    put("                empty += batch - done")
    put("                break")
    put("            empty += skip")
    put("            done += skip + 1")
    put("            state, u = _uniform(state)  # the first active feature, given one is active")
    put("            first = 0")
    put(f"            while first < {n - 1} and u >= first_cdf[first]:")
    put("                first += 1")
    for j in F:
        put("            state, u = _uniform(state)")
        put(f"            x{j} = u if first == {j} else (u * id{j} if first < {j} and u < d{j} else 0.0)")
    put("        else:")
    put("            done += 1")
    for j in F:
        put("            state, u = _uniform(state)")
        put(f"            x{j} = u * id{j} if u < d{j} else 0.0")
    put("            if " + " and ".join(f"x{j} == 0.0" for j in F) + ":")
    put("                empty += 1")
    put("                continue")
    for k in H:
        put(f"        s{k} = 1.0")
    put("        if dropout:")
    for k in H:
        put("            state, u = _uniform(state)")
        put(f"            s{k} = inv_keep if u < keep else 0.0")
    for k in H:
        put(f"        h{k} = s{k} * (" + " + ".join(f"W{k}_{j} * x{j}" for j in F) + ")")
    for i in F:
        put(f"        y{i} = b{i} + " + " + ".join(f"W{k}_{i} * h{k}" for k in H))
        put(f"        e{i} = y{i} - x{i} if y{i} > 0.0 else -x{i}")
        put(f"        total += I{i} * e{i} * e{i}")
        put(f"        a{i} = I{i} * e{i} if y{i} > 0.0 else 0.0")
        put(f"        gb{i} += a{i}")
        for k in H:
            put(f"        gW{k}_{i} += a{i} * h{k}")
    for k in H:
        put(f"        dh{k} = s{k} * (" + " + ".join(f"W{k}_{i} * a{i}" for i in F) + ")")
        for j in F:
            put(f"        gW{k}_{j} += dh{k} * x{j}")
    put("    # Samples with no active feature: x = 0, h = 0, output ReLU(b) whatever the mask.")
    for i in F:
        put(f"    if b{i} > 0.0:")
        put(f"        total += empty * I{i} * b{i} * b{i}")
        put(f"        gb{i} += empty * I{i} * b{i}")
    put(f"    weight = 2.0 / (batch * {n})")
    for k in H:
        for j in F:
            put(f"    gW[{k}, {j}] = weight * gW{k}_{j}")
    for j in F:
        put(f"    gb[{j}] = weight * gb{j}")
    put("    return state, total / batch")
    return "\n".join(out) + "\n"


_BLOCKS = """
@nb.njit(parallel=True, cache=True)
def train_block(
    W, b, exp_avg_W, exp_avg_b, exp_sq_W, exp_sq_b, states, density, inv_density, importance, keep,
    mode, inv_log_empty, first_cdf, first, last, batch_size, lr, weight_decay, beta1, beta2, eps, log_slot,
    history, threshold, snap_W, snap_b, snap_step,
):
    # Steps first..last-1 (0-based) of every instance; the state arrays are updated in place.
    instances, m, n = W.shape
    for inst in nb.prange(instances):
        gW = np.empty((m, n))
        gb = np.empty(n)
        Wi, bi = W[inst], b[inst]
        state = states[inst]
        for t in range(first, last):
            state, loss = batch(
                Wi, bi, density[inst], inv_density[inst], importance[inst], keep[inst], mode[inst],
                inv_log_empty[inst], first_cdf[inst], batch_size, state, gW, gb,
            )
            finish_step(
                inst, t, loss, gW, gb, W, b, exp_avg_W, exp_avg_b, exp_sq_W, exp_sq_b, lr, weight_decay,
                beta1, beta2, eps, log_slot, history, threshold, snap_W, snap_b, snap_step,
            )
        states[inst] = state


@nb.njit(parallel=True, cache=True)
def gradients(
    W, b, states, density, inv_density, importance, keep, mode, inv_log_empty, first_cdf, batch_size, batches,
    out_gW, out_gb, out_loss,
):
    # `batches` batches per instance at fixed (W, b): each batch's gradient and loss.
    instances, m, n = W.shape
    for inst in nb.prange(instances):
        gW = np.empty((m, n))
        gb = np.empty(n)
        state = states[inst]
        for t in range(batches):
            state, loss = batch(
                W[inst], b[inst], density[inst], inv_density[inst], importance[inst], keep[inst], mode[inst],
                inv_log_empty[inst], first_cdf[inst], batch_size, state, gW, gb,
            )
            out_gW[inst, t] = gW
            out_gb[inst, t] = gb
            out_loss[inst, t] = loss
        states[inst] = state
"""

_HEADER = """# Generated by sim.fused for one (n_features, n_hidden); numba caches it beside this file.
import math

import numba as nb
import numpy as np

from sim.fused import DENSE, NEVER, _uniform, finish_step


@nb.njit(inline="always", cache=True)
"""

_KERNELS: dict[tuple[int, int], tuple] = {}


def _cache_folder() -> Path:
    """Where the generated kernels live: $TMS_DROPOUT_CACHE, or ~/.cache/tms-dropout/kernels."""
    root = os.environ.get("TMS_DROPOUT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "tms-dropout"
    )
    folder = Path(root) / "kernels"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    except OSError:
        fallback = Path(tempfile.gettempdir()) / "tms-dropout-kernels"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def _kernels(n: int, m: int):
    """(train_block, gradients) for (n, m): a generated module, compiled once and cached on disk.

    The first use of a shape compiles for 10-30 s; later processes load the cache.
    """
    if (n, m) not in _KERNELS:
        source = _HEADER + _batch_source(n, m) + _BLOCKS
        digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        path = _cache_folder() / f"fused_{n}x{m}_{digest}.py"
        if not path.exists() or path.read_bytes() != source.encode():  # a damaged cache is written again
            storage.save_text(source, path)
        name = f"tms_dropout_fused_{n}x{m}_{digest}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # numba's cache finds the module by name when it loads
        spec.loader.exec_module(module)
        _KERNELS[(n, m)] = (module.train_block, module.gradients)
    return _KERNELS[(n, m)]


def seed_states(seed: int, instances: int) -> np.ndarray:
    """Each instance's SplitMix64 state, from (seed, instance index)."""
    return np.array(
        [np.random.SeedSequence([int(seed), i]).generate_state(1, np.uint64)[0] for i in range(instances)],
        dtype=np.uint64,
    )


def setup_arrays(setups):
    """The kernels' per-instance inputs, in their argument order.

    density, 1 / density (0 where the density is 0), importance: (I, n); keep = 1 - p: (I,);
    how empty samples are drawn, mode (I,): DENSE (every sample drawn), SPARSE (empty samples
    skipped, P(empty) > SPARSE_ABOVE) or NEVER (every sample empty); for SPARSE, 1 / log P(empty)
    (I,) and the law of the first active feature given one is active, its CDF over features
    0..n-2: P(first = j | some) = d_j prod_{i<j} (1 - d_i) / (1 - P(empty)), (I, max(n - 1, 1)).
    """
    density = np.array([s.density for s in setups], dtype=np.float64)
    inv_density = np.divide(1.0, density, out=np.zeros_like(density), where=density > 0)
    importance = np.array([s.importance_array for s in setups], dtype=np.float64)
    keep = np.array([1.0 - s.p for s in setups], dtype=np.float64)
    p_empty = np.prod(1.0 - density, axis=1)
    mode = np.where(p_empty >= 1.0, NEVER, np.where(p_empty > SPARSE_ABOVE, SPARSE, DENSE)).astype(np.int64)
    sparse = mode == SPARSE
    inv_log_empty = np.zeros(len(setups))
    inv_log_empty[sparse] = 1.0 / np.log(p_empty[sparse])
    none_before = np.cumprod(np.c_[np.ones(len(setups)), 1.0 - density[:, :-1]], axis=1)
    first_cdf = np.zeros((len(setups), max(density.shape[1] - 1, 1)))
    cdf = np.cumsum(density * none_before, axis=1)[:, :-1] / np.where(sparse, 1.0 - p_empty, 1.0)[:, None]
    first_cdf[:, : cdf.shape[1]] = cdf
    return density, inv_density, importance, keep, mode, inv_log_empty, first_cdf


def batch_gradients(setups, W, b, *, batch: int, batches: int, seed: int = 0, kernels=None):
    """Per-batch gradients of the TMS objective and batch losses at fixed (W, b), from the kernel.

    kernels: (train_block, gradients) of another kernel with these arguments (sim.tiled.KERNELS);
    None: this module's, generated for (n, m).
    Returns (gW (I, batches, m, n), gb (I, batches, n), loss (I, batches)).
    """
    W = np.ascontiguousarray(W, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    instances, m, n = W.shape
    out_gW = np.empty((instances, batches, m, n))
    out_gb = np.empty((instances, batches, n))
    out_loss = np.empty((instances, batches))
    gradients = (kernels or _kernels(n, m))[1]
    gradients(
        W, b, seed_states(seed, instances), *setup_arrays(setups), batch, batches, out_gW, out_gb, out_loss
    )
    return out_gW, out_gb, out_loss


def sampled_loss(setups, W, b, *, n_samples: int, seed: int, batch: int = 1000, kernels=None):
    """Each instance's loss (sum over features) on n_samples fresh samples: (mean, standard error).

    The samples are drawn in batches of `batch`; the standard error is that of
    the mean of the batch means.
    """
    batches = max(2, math.ceil(n_samples / batch))
    _, _, loss = batch_gradients(setups, W, b, batch=batch, batches=batches, seed=seed, kernels=kernels)
    return loss.mean(1), loss.std(1, ddof=1) / math.sqrt(batches)


class FusedRun:
    """The state of a fused training run, advanced block by block (so progress can be shown)."""

    def __init__(
        self, setups, init_W, *, batch, lr, weight_decay, seed, log_steps, snapshot_below=None, kernels=None
    ):
        instances = len(setups)
        self.W = np.array(init_W, dtype=np.float64)
        m, n = self.W.shape[1:]
        self.b = np.zeros((instances, n))
        self.exp_avg_W = np.zeros_like(self.W)
        self.exp_avg_b = np.zeros_like(self.b)
        self.exp_sq_W = np.zeros_like(self.W)
        self.exp_sq_b = np.zeros_like(self.b)
        self.states = seed_states(seed, instances)
        self.arrays = setup_arrays(setups)
        self._train_block = (kernels or _kernels(n, m))[0]
        self.batch, self.lr, self.weight_decay = int(batch), float(lr), float(weight_decay)
        steps = int(log_steps[-1]) + 1
        self.log_slot = np.full(steps, -1, dtype=np.int64)
        self.log_slot[np.asarray(log_steps)] = np.arange(len(log_steps))
        self.history = np.zeros((instances, len(log_steps)))
        self.threshold = (
            np.full(instances, -np.inf) if snapshot_below is None else np.asarray(snapshot_below, float)
        )
        self.snap_W = np.zeros_like(self.W)
        self.snap_b = np.zeros_like(self.b)
        self.snap_step = np.full(instances, -1, dtype=np.int64)
        self.done = 0

    def advance(self, steps: int) -> None:
        last = min(self.done + steps, len(self.log_slot))
        self._train_block(
            self.W, self.b, self.exp_avg_W, self.exp_avg_b, self.exp_sq_W, self.exp_sq_b, self.states,
            *self.arrays, self.done, last, self.batch, self.lr,
            self.weight_decay, 0.9, 0.999, 1e-8, self.log_slot, self.history, self.threshold,
            self.snap_W, self.snap_b, self.snap_step,
        )  # fmt: skip
        self.done = last
