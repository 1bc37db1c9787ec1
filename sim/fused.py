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

Randomness: SplitMix64 (sim.splitmix), one stream per instance, seeded from (seed, the
instance's index): the numbers do not depend on the thread count, and an
instance's run depends only on its seed, index and setup. The stream differs
from sim.trainer's (SFC64 batches), the distribution of every batch does not.

Use it through sim.trainer.train(..., backend="fused"); `backend="auto"`
picks it on CPU for models with n * m <= FUSED_MAX_SIZE (2 features in 1
dim, the phase-diagram workload), and sim.tiled above. The kernels are run by
sim.kernel_run, which states their arguments.
"""

from __future__ import annotations

from sim.kernel_run import Kernels, compile_kernels

#: Largest n_features * n_hidden for which backend="auto" takes the fused kernel on CPU; larger models
#: take sim.tiled. Both skip empty samples; on 2 cores (benchmarks/empty_samples.py) fused is 0.4x
#: tiled when dense and 1.2-1.6x at densities 0.03-0.001 for 2 in 1 (1-2x for 5 in 2 below 0.01).
#: Kept at 2 so that earlier 2-in-1 sweeps resume with their stream; a config over densities 0.01-1 gains
#: from asking for tiled (configs/compare/two_in_one.toml: training 2.2x faster).
FUSED_MAX_SIZE = 2


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
        "def batch(W, b, density, inv_density, importance, keep, mode, inv_log_empty, first_cdf, leaders,"
        " batch, state, gW, gb):"
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
    put("    " + "; ".join(f"L{k} = leaders[{k}]" for k in H))
    put("    grouped = " + " or ".join(f"L{k} != {k}" for k in H))
    put("    inv_keep = 1.0 / keep")
    put("    sparse = mode != DENSE")
    put("    never = mode == NEVER")
    put("    done = 0")
    put("    while done < batch:")
    put("        if sparse:  # skip the empty samples: their number before the next non-empty is geometric")
    put("            if never:")
    put("                empty += batch - done")
    put("                break")
    put(f"            state, first, done, empty = next_nonempty(state, first_cdf, {n}, batch, done, empty,"
        " inv_log_empty)")  # fmt: skip
    put("            if first < 0:")
    put("                break")
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
        put(f"            state, v{k} = _uniform(state)")
    if m > 1:
        put("            if grouped:  # a unit is kept exactly when its group's leader (a unit before it) is")
    for k in H[1:]:
        chain = " else ".join(f"v{j} if L{k} == {j}" for j in range(k)) + f" else v{k}"
        put(f"                v{k} = {chain}")
    for k in H:
        put(f"            s{k} = inv_keep if v{k} < keep else 0.0")
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


_HEADER = """# Generated by sim.fused for one (n_features, n_hidden); numba caches it beside this file.
import numba as nb
import numpy as np

from sim.kernel_run import DENSE, NEVER, finish_step, next_nonempty
from sim.splitmix import uniform as _uniform


@nb.njit(inline="always", cache=True)
"""

_KERNELS: dict[tuple[int, int], Kernels] = {}


def kernels(n: int, m: int) -> Kernels:
    """The kernels for (n, m): a generated module, compiled once and cached on disk.

    The first use of a shape compiles for 10-30 s; later processes load the cache.
    """
    if (n, m) not in _KERNELS:
        _KERNELS[(n, m)] = compile_kernels(
            f"fused_{n}x{m}",
            _HEADER + _batch_source(n, m),
            ("sim.kernel_run", "sim.splitmix"),
            flags="",
            prelude="",
            arrays="density[inst], inv_density[inst], importance[inst], keep[inst], mode[inst], "
            "inv_log_empty[inst], first_cdf[inst], leaders[inst]",
            extra="",
        )
    return _KERNELS[(n, m)]
