"""The numba kernels with and without skipping empty samples, on the same work in one run.

    python benchmarks/empty_samples.py [--instances 200] [--batches 20] [--rounds 3]

At low density most samples of a batch have no active feature; sim.fused and
sim.tiled count those instead of drawing them (kernel_run.setup_arrays, mode
SPARSE, when P(empty) is above the backend's sparse_above: 0.5 for fused,
sim.tiled.sparse_above(n, m) for tiled). The baseline is the same kernel with
every sample drawn (mode forced to DENSE). Prints batch gradients per second (batch
1024, p = 0.2, importance 0.9**i, one density for every feature) for each
shape and density: skipping, drawing every sample, and their ratio; the
median of --rounds interleaved rounds. Also fused against tiled.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sim.kernel_run import DENSE, numba_kernels, setup_arrays
from sim.splitmix import seed_states
from theory import Setup


def rate(kernels, W, b, arrays, batches: int) -> float:
    """Batch gradients per second (every instance, `batches` batches each)."""
    instances, m, n = W.shape
    out = (
        np.empty((instances, batches, m, n)),
        np.empty((instances, batches, n)),
        np.empty((instances, batches)),
    )
    start = time.perf_counter()
    kernels.gradients(W, b, seed_states(0, instances), *arrays, 1024, batches, *out)
    return instances * batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("batch gradients/s (batch 1024), median of", args.rounds, "rounds")
    print(
        f"{'shape':>6} {'density':>8} {'P(empty)':>9} {'backend':>7} {'skip':>10} {'draw all':>10} "
        f"{'ratio':>6}"
    )
    for n, m in ((2, 1), (5, 2), (20, 5)):
        backends = ("fused", "tiled") if n * m <= 10 else ("tiled",)
        for density in (1.0, 0.1, 0.03, 0.01, 0.001):
            setups = [
                Setup(n, m, sparsity=1 - density, importance=0.9 ** np.arange(n), p=0.2)
            ] * args.instances
            rng = np.random.default_rng(0)
            W = rng.normal(0, 0.5, (args.instances, m, n))
            b = rng.normal(0, 0.1, (args.instances, n))
            rates = {}
            for backend in backends:
                kernels = numba_kernels(backend, n, m)
                arrays = setup_arrays(setups, kernels.sparse_above)
                dense = list(arrays)
                dense[4] = np.full_like(arrays[4], DENSE)
                rate(kernels, W, b, arrays, 1)  # compile or load
                rounds = [
                    (rate(kernels, W, b, arrays, args.batches), rate(kernels, W, b, dense, args.batches))
                    for _ in range(args.rounds)
                ]
                skip, full = np.median(rounds, axis=0)
                rates[backend] = skip
                p_empty = (1 - density) ** n
                print(
                    f"{n}x{m:<4} {density:8g} {p_empty:9.3f} {backend:>7} {skip:10.0f} {full:10.0f} "
                    f"{skip / full:5.1f}x"
                )
            if len(rates) == 2:
                print(f"{'':>33} tiled / fused {rates['tiled'] / rates['fused']:.2f}x")


if __name__ == "__main__":
    main()
