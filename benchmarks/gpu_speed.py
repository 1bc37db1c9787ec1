"""The trainer on a GPU against the published TMS loop on the same GPU, in one invocation.

    python benchmarks/gpu_speed.py [--rounds 5] [--device cuda]

Workloads (batch 1024, AdamW lr 1e-3), in instance-steps per second:

- 2 features in 1 dim, --instances models (100,000 by default): densities
  log-uniform on [0.01, 1], importance ratio log-uniform on [0.1, 10],
  p in {0, 0.15, 0.4} (the phase comparison's work, at scale);
- 20 features in 5 dims, 10 models (the notebook's sparsity sweep,
  importance 0.7**i, p = 0.4), and the same with --wide models (10,000).

Each is timed with sim.train (the torch backend; on CUDA its random numbers
come from torch's generator on the device) and with the published loop
(sim.published) on the same device, alternately for --rounds rounds; the
median of each is printed with the ratio and the peak memory. The device's
copy bandwidth, measured in the same run, gives a floor for a step: one
pass writing and reading the step's random integers (4 bytes each, one per
feature and hidden unit of every sample).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from sim import train
from sim.published import ReferenceModel, reference_optimize
from theory import Setup
from theory.grid import tms_sparsities


def phase_setups(count: int) -> list[Setup]:
    rng = np.random.default_rng(0)
    density = np.exp(rng.uniform(np.log(0.01), 0.0, count))
    ratio = np.exp(rng.uniform(np.log(0.1), np.log(10), count))
    p = rng.choice([0.0, 0.15, 0.4], count)
    return [
        Setup(2, 1, sparsity=1 - d, importance=[1.0, r], p=q)
        for d, r, q in zip(density, ratio, p, strict=True)
    ]


def twenty_setups(count: int) -> list[Setup]:
    sparsity = np.resize(tms_sparsities(10), count)
    return [Setup(20, 5, sparsity=s, importance=0.7 ** np.arange(20), p=0.4) for s in sparsity]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def ours(setups, steps: int, device: torch.device) -> tuple[float, float]:
    """(instance-steps/s, peak GiB) of sim.train's torch backend on device."""
    _peak_reset(device)
    result = train(setups, steps=steps, progress=False, backend="torch", device=str(device))
    return len(setups) * steps / result.seconds, _peak_gib(device)


def published(setups, steps: int, device: torch.device) -> tuple[float, float]:
    """(instance-steps/s, peak GiB) of the published notebook's loop (with dropout) on device."""
    n, m = setups[0].n_features, setups[0].n_hidden
    if len({s.p for s in setups}) > 1:  # the notebook's model takes one p: time the largest
        setups = [Setup(n, m, sparsity=s.sparsity, importance=s.importance, p=0.4) for s in setups]
    probability = torch.tensor(np.array([s.density for s in setups]), dtype=torch.float32, device=device)
    importance = torch.tensor(
        np.array([s.importance_array for s in setups]), dtype=torch.float32, device=device
    )
    torch.manual_seed(0)
    model = ReferenceModel(len(setups), n, m, probability, importance, setups[0].p).to(device)
    _peak_reset(device)
    _synchronize(device)
    start = time.perf_counter()
    reference_optimize(model, steps=steps)  # ends with loss.item(), which waits for the device
    return len(setups) * steps / (time.perf_counter() - start), _peak_gib(device)


def copy_bandwidth(device: torch.device, size: int = 2**28) -> float:
    """Bytes per second of a device-to-device copy (read and write counted), best of 10."""
    a = torch.empty(size, dtype=torch.float32, device=device)
    b = torch.empty_like(a)
    b.copy_(a)
    best = float("inf")
    for _ in range(10):
        _synchronize(device)
        start = time.perf_counter()
        b.copy_(a)
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * 4 * size / best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instances", type=int, default=100_000, help="2-in-1 models")
    parser.add_argument("--wide", type=int, default=10_000, help="20-in-5 models of the wide workload")
    parser.add_argument("--steps", type=int, default=200, help="steps of a timed run (x5 for 10 models)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        print(f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, torch {torch.__version__}")
    else:
        print(f"{device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    bandwidth = copy_bandwidth(device)
    print(f"copy bandwidth (read + write): {bandwidth / 1e9:.0f} GB/s")
    workloads = {
        f"2 in 1, {args.instances} models": (phase_setups(args.instances), args.steps),
        "20 in 5, 10 models": (twenty_setups(10), 5 * args.steps),
        f"20 in 5, {args.wide} models": (twenty_setups(args.wide), args.steps),
    }
    print(
        f"instance-steps/s, median of {args.rounds} rounds (each timed run: the steps shown, after a warm-up)"
    )
    for name, (setups, steps) in workloads.items():
        rates = {"sim.train": [], "published": []}
        peaks = {}
        for timer in (ours, published):
            timer(setups, 5, device)  # warm-up: allocator, kernels' first launch
        for _ in range(args.rounds):
            for timer, key in ((ours, "sim.train"), (published, "published")):
                rate, peaks[key] = timer(setups, steps, device)
                rates[key].append(rate)
        mine, theirs = (statistics.median(rates[k]) for k in ("sim.train", "published"))
        n, m = setups[0].n_features, setups[0].n_hidden
        floor = 2 * 4 * len(setups) * (n + m) * 1024 / bandwidth  # seconds: the integers once
        ms = {key: 1e3 * len(setups) / statistics.median(rate) for key, rate in rates.items()}
        print(f"  {name} ({steps} steps): sim.train / published {mine / theirs:.1f}x")
        for key, rate in (("sim.train", mine), ("published", theirs)):
            print(f"    {key:10s} {rate:14,.0f}  {ms[key]:8.3f} ms/step  peak {peaks[key]:6.2f} GiB")
        print(f"    floor (the step's random integers written and read once): {1e3 * floor:.3f} ms/step")


if __name__ == "__main__":
    main()
