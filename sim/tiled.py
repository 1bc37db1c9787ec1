"""A tiled CPU trainer (numba): each instance's batch in cache-sized tiles, vectorised over samples.

The same model, data law, objective and optimiser as sim.trainer and
sim.fused (docs/model.md section 2; the TMS notebook's loop: batch mean of the
per-feature mean of I_i (x_i - x'_i)^2, AdamW with torch's update, weight
decay on W and b). Where sim.fused computes one sample at a time in scalar
registers (best for the smallest models at the lowest densities),
this kernel cuts each instance's batch into tiles of TILE samples and runs
every step of the pass as a loop over the tile's samples, which the
compiler vectorises (8 float32 lanes with AVX2):

- randomness: SplitMix64 in counter form (output q of a stream is a
  function of state + q * golden), so a tile's numbers are drawn by a
  vectorised loop; each 64-bit output gives two 24-bit uniforms;
- x_i = u / P_i where u < P_i (one uniform per feature, as sim.trainer);
  the dropout scale is 1 / (1 - p) where u < 1 - p, else 0;
- where samples are mostly empty (P(empty) above sparse_above(n, m)), a tile
  holds only non-empty samples, drawn as sim.fused draws them (a geometric
  gap of empty samples before each, then its first active feature); the
  empty ones are counted, their output ReLU(b) added in closed form. Same
  law, fewer numbers: 2.6x at density 0.01 for 20 in 5, 8x at 0.001;
- forward, backward in float32 within the tile (torch's precision), tile
  sums added into float64 gradients; AdamW in float64 (sim.kernel_run.finish_step).

A tile never leaves the L1/L2 cache: nothing of the batch is written to
memory, which is what bounds the torch trainer on CPU (it streams
(instances, features, batch) tensors through every pass). Instances run in
parallel (numba prange); one instance's numbers depend only on its seed,
its index and its setup, never on the thread count.

Use it through sim.trainer.train(..., backend="tiled"); `backend="auto"`
picks it on CPU for models with n * m > sim.fused.FUSED_MAX_SIZE.
"""

from __future__ import annotations

from dataclasses import replace

import numba as nb
import numpy as np

from sim.kernel_run import NEVER, SPARSE, Kernels, compile_kernels, next_nonempty
from sim.splitmix import GOLDEN, mix

#: Samples per tile. The tile's working set is about (2 n + 2 m + 4) * TILE * 4 bytes
#: (20 features, 5 hidden: 27 KiB), inside a core's L1/L2 cache.
TILE = 128

_S40, _S8 = np.uint64(40), np.uint64(8)
_LOW24 = np.uint64(0xFFFFFF)
_UNIT24 = np.float32(2.0**-24)
#: The float rules relaxed so that the tile loops vectorise (sums reassociated, multiply-adds fused);
#: no assumption about NaN or infinity, so a diverging run still shows as NaN.
FAST = {"reassoc", "contract", "nsz"}


@nb.njit(fastmath=FAST, inline="always")
def _draw(state, U, pairs):
    """2 * pairs uniforms on [0, 1) (24-bit grid) into U[:2 * pairs]; returns the advanced state."""
    for q in range(pairs):
        z = mix(state + np.uint64(q + 1) * GOLDEN)
        U[q] = np.float32(z >> _S40) * _UNIT24
        U[q + pairs] = np.float32((z >> _S8) & _LOW24) * _UNIT24
    return state + np.uint64(pairs) * GOLDEN


@nb.njit(fastmath=FAST, inline="always")
def batch_gradient(
    W,
    b,
    density,
    inv_density,
    importance,
    keep,
    mode,
    inv_log_empty,
    first_cdf,
    leaders,
    batch,
    state,
    gW,
    gb,
    work,
):
    """One batch at (W, b): its gradient of the TMS objective into gW, gb; returns (state, batch loss).

    The loss is the batch mean of the importance-weighted sum over features
    (docs/model.md, the loss L); the gradient is that of L / n. `work` holds the tile
    buffers (tile_buffers). mode, inv_log_empty, first_cdf: the law of the empty
    samples (sim.kernel_run.setup_arrays); with mode SPARSE a tile holds only
    non-empty samples (_sparse_slots), the empty ones are counted.
    """
    U, X, S, H, A, D, Y, L, W32, b32, d32, id32, imp32, first = work
    m, n = W.shape
    dropout = keep < 1.0
    rows = n + m if dropout else n
    pairs = (rows * TILE + 1) // 2
    inv_keep = np.float32(1.0 / keep)
    keep32 = np.float32(keep)
    for k in range(m):
        for j in range(n):
            W32[k, j] = W[k, j]
            gW[k, j] = 0.0
    for j in range(n):
        b32[j] = b[j]
        d32[j] = density[j]
        id32[j] = inv_density[j]
        imp32[j] = importance[j]
        gb[j] = 0.0
    total = 0.0
    empty = batch if mode == NEVER else 0
    done = empty
    while done < batch:
        if mode == SPARSE:
            state, T, done, empty = _sparse_slots(
                state, first, first_cdf, n, inv_log_empty, batch, done, empty
            )
            if T == 0:
                break
            state = _draw(state, U, pairs)
            for j in range(n):
                dj, idj = d32[j], id32[j]
                for t in range(T):
                    u = U[j * TILE + t]
                    f = first[t]
                    X[j, t] = u if f == j else (u * idj if f < j and u < dj else np.float32(0.0))
        else:
            T = min(TILE, batch - done)
            done += T
            state = _draw(state, U, pairs)
            for j in range(n):
                dj, idj = d32[j], id32[j]
                for t in range(T):
                    u = U[j * TILE + t]
                    X[j, t] = u * idj if u < dj else np.float32(0.0)
        if dropout:
            for k in range(m):
                row = (n + leaders[k]) * TILE  # a unit's draws are its group leader's
                for t in range(T):
                    S[k, t] = inv_keep if U[row + t] < keep32 else np.float32(0.0)
        # h = scale * W x
        for k in range(m):
            for t in range(T):
                H[k, t] = 0.0
            for j in range(n):
                w = W32[k, j]
                for t in range(T):
                    H[k, t] += w * X[j, t]
            if dropout:
                for t in range(T):
                    H[k, t] *= S[k, t]
        # y = W^T h + b; a = I (ReLU(y) - x) where y > 0, else 0
        for i in range(n):
            for t in range(T):
                Y[t] = b32[i]
            for k in range(m):
                w = W32[k, i]
                for t in range(T):
                    Y[t] += w * H[k, t]
            Ii = imp32[i]
            for t in range(T):
                y, x = Y[t], X[i, t]
                e = y - x if y > 0.0 else -x
                L[t] = Ii * e * e if i == 0 else L[t] + Ii * e * e
                A[i, t] = Ii * e if y > 0.0 else np.float32(0.0)
            edge = np.float32(0.0)
            for t in range(T):
                edge += A[i, t]
            gb[i] += edge
            for k in range(m):
                dot = np.float32(0.0)
                for t in range(T):
                    dot += A[i, t] * H[k, t]
                gW[k, i] += dot
        total += _sequential_sum(L, T)
        # through h: dh = scale * W a; grad W += dh x^T
        for k in range(m):
            for t in range(T):
                D[t] = 0.0
            for i in range(n):
                w = W32[k, i]
                for t in range(T):
                    D[t] += w * A[i, t]
            if dropout:
                for t in range(T):
                    D[t] *= S[k, t]
            for j in range(n):
                dot = np.float32(0.0)
                for t in range(T):
                    dot += D[t] * X[j, t]
                gW[k, j] += dot
    # samples with no active feature: x = 0, h = 0, the output ReLU(b) whatever the mask
    for i in range(n):
        if b[i] > 0.0:
            total += empty * importance[i] * b[i] * b[i]
            gb[i] += empty * importance[i] * b[i]
    weight = 2.0 / (batch * n)
    for k in range(m):
        for j in range(n):
            gW[k, j] *= weight
    for j in range(n):
        gb[j] *= weight
    return state, total / batch


@nb.njit(inline="always")
def _sparse_slots(state, first, first_cdf, n, inv_log_empty, batch, done, empty):
    """The next tile's non-empty samples (sim.kernel_run.next_nonempty, up to TILE of them). Returns
    (state, samples in the tile, batch positions done, empty samples so far); first[t] is sample t's
    first active feature."""
    T = 0
    while T < TILE and done < batch:
        state, f, done, empty = next_nonempty(state, first_cdf, n, batch, done, empty, inv_log_empty)
        if f < 0:
            break
        first[T] = f
        T += 1
    return state, T, done, empty


@nb.njit(inline="never")
def _sequential_sum(values, count):
    """values[:count] summed in order, in float64. Compiled without fast-math, so no compilation may
    reassociate it: a reassociated loss sum came out differently from a fresh compile than from
    numba's cache, and a resumed sweep must reproduce an uninterrupted one bit for bit."""
    total = 0.0
    for t in range(count):
        total += values[t]
    return total


@nb.njit(inline="always")
def tile_buffers(m, n):
    """The per-thread tile buffers batch_gradient works in."""
    f32 = np.float32
    return (
        np.empty((n + m) * TILE + 1, f32),  # U: the tile's uniforms
        np.empty((n, TILE), f32),  # X: features
        np.empty((m, TILE), f32),  # S: dropout scale
        np.empty((m, TILE), f32),  # H: hidden
        np.empty((n, TILE), f32),  # A: importance-weighted output error where y > 0
        np.empty(TILE, f32),  # D: one row of the gradient at h
        np.empty(TILE, f32),  # Y: one row of the pre-activation
        np.empty(TILE, f32),  # L: each sample's importance-weighted squared error
        np.empty((m, n), f32),
        np.empty(n, f32),
        np.empty(n, f32),
        np.empty(n, f32),
        np.empty(n, f32),
        np.empty(TILE, np.int64),  # first: each sample's first active feature (sparse tiles)
    )


_HEADER = """# Generated by sim.tiled; numba caches it beside this file.
import numba as nb
import numpy as np

from sim.kernel_run import finish_step
from sim.tiled import FAST, tile_buffers
from sim.tiled import batch_gradient as batch
"""

_KERNELS: list[Kernels] = []


def sparse_above(n: int, m: int) -> float:
    """The P(empty sample) above which this kernel skips empty samples, for n features in m dims.

    A sparse tile costs a scalar draw per non-empty sample (the gap before it, its first active
    feature), a dense one the vectorised work of every sample, which grows with n m: skipping pays
    above 1 / (1.1 + 0.018 n m). Fitted to benchmarks/empty_samples.py on 2 cores (break-even near
    0.87 for 2 in 1, 0.75 for 5 in 2, below 0.54 for 20 in 5).
    """
    return 1.0 / (1.1 + 0.018 * n * m)


def kernels(n: int, m: int) -> Kernels:
    """This backend's kernels (one pair for every shape), as sim.kernel_run runs them, with the
    sparse_above of shape (n, m)."""
    if not _KERNELS:
        _KERNELS.append(
            compile_kernels(
                "tiled",
                _HEADER,
                ("sim.kernel_run", "sim.splitmix", "sim.tiled"),
                flags=", fastmath=FAST",
                prelude="work = tile_buffers(m, n)\n        ",
                arrays="density[inst], inv_density[inst], importance[inst], keep[inst], mode[inst], "
                "inv_log_empty[inst], first_cdf[inst], leaders[inst]",
                extra=", work",
            )
        )
    return replace(_KERNELS[0], sparse_above=sparse_above(n, m))
