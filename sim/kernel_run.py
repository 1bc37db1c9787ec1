"""The driver of the numba trainers (sim.fused, sim.tiled): their kernel interface, runs, batches.

A backend is a pair of numba kernels (Kernels) that take the same arguments:

    train_block(W, b, exp_avg_W, exp_avg_b, exp_sq_W, exp_sq_b, states, *arrays, first, last,
                batch_size, lr, weight_decay, beta1, beta2, eps, log_slot, history, threshold,
                snap_W, snap_b, snap_step)
        steps first..last-1 of every instance in place, each ending with finish_step;
    gradients(W, b, states, *arrays, batch_size, batches, out_gW, out_gb, out_loss)
        `batches` batches per instance at fixed (W, b): each batch's gradient and loss.

arrays = setup_arrays(setups): density, 1 / density, importance, keep = 1 - p, and the law of a
batch's empty samples (mode, inv_log_empty, first_cdf), which a kernel that draws every sample
(sim.tiled) leaves unread. states: each instance's SplitMix64 state (sim.splitmix), advanced in place.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numba as nb
import numpy as np

from sim.splitmix import seed_states, uniform
from theory import storage

#: A batch whose samples are empty (no active feature) with probability above this skips them
#: (geometric gaps) instead of drawing every feature of every sample.
SPARSE_ABOVE = 0.5
#: setup_arrays' mode: how a batch's empty samples are drawn.
DENSE, SPARSE, NEVER = 0, 1, 2


@nb.njit(inline="always")
def next_nonempty(state, first_cdf, n, batch, done, empty, inv_log_empty):
    """The next non-empty sample of a SPARSE batch (setup_arrays): a geometric gap of empty samples
    before it (counted, not drawn), then its first active feature from first_cdf (features 0..n-2;
    n - 1 if none of them). Returns (state, its first active feature, or -1 if the batch ends before
    it; batch positions done; empty samples so far). Both numba backends draw empty samples so."""
    state, u = uniform(state)
    skip = int(math.log1p(-u) * inv_log_empty)
    if skip >= batch - done:
        return state, -1, batch, empty + batch - done
    state, u = uniform(state)
    first = 0
    while first < n - 1 and u >= first_cdf[first]:
        first += 1
    return state, first, done + skip + 1, empty + skip


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

    Every train_block ends its steps with this.
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


@dataclass(frozen=True)
class Kernels:
    """A numba backend's two kernels, with the arguments in this module's docstring, and the
    P(empty sample) above which they skip empty samples (setup_arrays' sparse_above)."""

    train_block: object
    gradients: object
    sparse_above: float = SPARSE_ABOVE


def numba_kernels(backend: str, n: int, m: int) -> Kernels:
    """The kernels of backend 'fused' (generated for (n, m)) or 'tiled', for models of shape (n, m)."""
    if backend == "tiled":
        from sim.tiled import kernels
    else:
        from sim.fused import kernels
    return kernels(n, m)


#: The two kernels around a backend's `batch` function, which computes one batch's gradient and loss:
#: every backend's per-instance loop, written once. {flags}: extra numba options; {prelude}: the
#: per-thread set-up; {arrays}: the per-instance arrays the batch function takes; {extra}: its
#: further arguments.
_LOOPS = """
@nb.njit(parallel=True, cache=True{flags})
def train_block(
    W, b, exp_avg_W, exp_avg_b, exp_sq_W, exp_sq_b, states, density, inv_density, importance, keep,
    mode, inv_log_empty, first_cdf, leaders, first, last, batch_size, lr, weight_decay, beta1, beta2, eps,
    log_slot, history, threshold, snap_W, snap_b, snap_step,
):
    # Steps first..last-1 (0-based) of every instance; the state arrays are updated in place.
    instances, m, n = W.shape
    for inst in nb.prange(instances):
        {prelude}gW = np.empty((m, n))
        gb = np.empty(n)
        Wi, bi = W[inst], b[inst]
        state = states[inst]
        for t in range(first, last):
            state, loss = batch(Wi, bi, {arrays}, batch_size, state, gW, gb{extra})
            finish_step(
                inst, t, loss, gW, gb, W, b, exp_avg_W, exp_avg_b, exp_sq_W, exp_sq_b, lr, weight_decay,
                beta1, beta2, eps, log_slot, history, threshold, snap_W, snap_b, snap_step,
            )
        states[inst] = state


@nb.njit(parallel=True, cache=True{flags})
def gradients(
    W, b, states, density, inv_density, importance, keep, mode, inv_log_empty, first_cdf, leaders, batch_size,
    batches,
    out_gW, out_gb, out_loss,
):
    # `batches` batches per instance at fixed (W, b): each batch's gradient and loss.
    instances, m, n = W.shape
    for inst in nb.prange(instances):
        {prelude}gW = np.empty((m, n))
        gb = np.empty(n)
        state = states[inst]
        for t in range(batches):
            state, loss = batch(W[inst], b[inst], {arrays}, batch_size, state, gW, gb{extra})
            out_gW[inst, t] = gW
            out_gb[inst, t] = gb
            out_loss[inst, t] = loss
        states[inst] = state
"""


def compile_kernels(name: str, header: str, depends: tuple[str, ...], **loops: str) -> Kernels:
    """A backend's kernels: `header` (imports, and a `batch` function or its import) and the loops
    (_LOOPS filled with `loops`), a generated module (load_generated)."""
    module = load_generated(name, header + _LOOPS.format(**loops), depends)
    return Kernels(module.train_block, module.gradients)


def load_generated(name: str, source: str, depends: tuple[str, ...]):
    """The module of generated `source`, written in the cache's `kernels` folder and imported, so that
    numba caches the code compiled from it beside it; later processes load that cache.

    The file's name carries a digest of its source and of the `depends` modules' files (the code it
    imports): numba's cache sees only the file it compiled, so a change there makes a new file.
    """
    digest = hashlib.sha256(source.encode())
    for module in depends:
        digest.update(Path(importlib.util.find_spec(module).origin).read_bytes())
    tag = digest.hexdigest()[:16]
    path = storage.cache_folder("kernels") / f"{name}_{tag}.py"
    if not path.exists() or path.read_bytes() != source.encode():  # a damaged cache is written again
        storage.save_text(source, path)
    module_name = f"tms_dropout_{name}_{tag}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # numba's cache finds the module by name when it loads
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Batches:
    """Per-batch gradients of the TMS objective and batch losses at fixed (W, b)."""

    gW: np.ndarray  # (instances, batches, m, n)
    gb: np.ndarray  # (instances, batches, n)
    loss: np.ndarray  # (instances, batches)


def setup_arrays(setups, sparse_above: float = SPARSE_ABOVE):
    """The kernels' per-instance inputs, in their argument order.

    density, 1 / density (0 where the density is 0), importance: (I, n); keep = 1 - p: (I,);
    how empty samples are drawn, mode (I,): DENSE (every sample drawn), SPARSE (empty samples
    skipped, P(empty) > sparse_above) or NEVER (every sample empty); for SPARSE, 1 / log P(empty)
    (I,) and the law of the first active feature given one is active, its CDF over features
    0..n-2: P(first = j | some) = d_j prod_{i<j} (1 - d_i) / (1 - P(empty)), (I, max(n - 1, 1));
    leaders (I, m): each hidden unit's dropout-group leader (theory.Setup.group_leaders): a unit is
    kept exactly when its leader's draw keeps it, so without groups every unit has its own draw.
    """
    density = np.array([s.density for s in setups], dtype=np.float64)
    inv_density = np.divide(1.0, density, out=np.zeros_like(density), where=density > 0)
    importance = np.array([s.importance_array for s in setups], dtype=np.float64)
    keep = np.array([1.0 - s.p for s in setups], dtype=np.float64)
    p_empty = np.prod(1.0 - density, axis=1)
    mode = np.where(p_empty >= 1.0, NEVER, np.where(p_empty > sparse_above, SPARSE, DENSE)).astype(np.int64)
    sparse = mode == SPARSE
    inv_log_empty = np.zeros(len(setups))
    inv_log_empty[sparse] = 1.0 / np.log(p_empty[sparse])
    none_before = np.cumprod(np.c_[np.ones(len(setups)), 1.0 - density[:, :-1]], axis=1)
    first_cdf = np.zeros((len(setups), max(density.shape[1] - 1, 1)))
    cdf = np.cumsum(density * none_before, axis=1)[:, :-1] / np.where(sparse, 1.0 - p_empty, 1.0)[:, None]
    first_cdf[:, : cdf.shape[1]] = cdf
    leaders = np.array([s.group_leaders for s in setups], dtype=np.int64)
    return density, inv_density, importance, keep, mode, inv_log_empty, first_cdf, leaders


def batch_gradients(setups, W, b, kernels: Kernels, *, batch: int, batches: int, seed: int = 0) -> Batches:
    """Per-batch gradients of the TMS objective and batch losses at fixed (W, b), from the kernels."""
    W = np.ascontiguousarray(W, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    instances, m, n = W.shape
    out_gW = np.empty((instances, batches, m, n))
    out_gb = np.empty((instances, batches, n))
    out_loss = np.empty((instances, batches))
    kernels.gradients(
        W, b, seed_states(seed, instances), *setup_arrays(setups, kernels.sparse_above), batch, batches,
        out_gW, out_gb, out_loss,
    )  # fmt: skip
    return Batches(out_gW, out_gb, out_loss)


def sampled_loss(setups, W, b, kernels: Kernels, *, n_samples: int, seed: int, batch: int = 1000):
    """Each instance's loss (sum over features) on n_samples fresh samples: (mean, standard error).

    The samples are drawn in batches of `batch`; the standard error is that of
    the mean of the batch means.
    """
    batches = max(2, math.ceil(n_samples / batch))
    loss = batch_gradients(setups, W, b, kernels, batch=batch, batches=batches, seed=seed).loss
    return loss.mean(1), loss.std(1, ddof=1) / math.sqrt(batches)


class KernelRun:
    """The state of a numba training run, advanced block by block (so progress can be shown)."""

    def __init__(
        self,
        setups,
        init_W,
        kernels: Kernels,
        *,
        batch,
        lr,
        weight_decay,
        seed,
        log_steps,
        snapshot_below=None,
    ):
        instances = len(setups)
        self.W = np.array(init_W, dtype=np.float64)
        n = self.W.shape[2]
        self.b = np.zeros((instances, n))
        self.exp_avg_W = np.zeros_like(self.W)
        self.exp_avg_b = np.zeros_like(self.b)
        self.exp_sq_W = np.zeros_like(self.W)
        self.exp_sq_b = np.zeros_like(self.b)
        self.states = seed_states(seed, instances)
        self.arrays = setup_arrays(setups, kernels.sparse_above)
        self._train_block = kernels.train_block
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
