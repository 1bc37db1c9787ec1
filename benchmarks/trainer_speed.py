"""sim.train against the published TMS training loop on identical work.

    python benchmarks/trainer_speed.py [--steps 500] [--rounds 3]

Identical work: 20 features, 5 hidden, 10 instances (the notebook's sparsity
sweep, importance 0.7**i), batch 1024, dropout p = 0.4, AdamW lr 1e-3.
The two trainers alternate for --rounds rounds in one process (this machine's
timing noise is large); the best round of each is reported, with the ratio.
Also: the phase-diagram workload, 2 features in 1 dim with many instances.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from tms_reference import ReferenceModel, reference_optimize  # noqa: E402

from sim import train  # noqa: E402
from sim.config import tms_sparsities  # noqa: E402
from sim.trainer import _Batched, _FlatAdamW  # noqa: E402
from theory import Setup  # noqa: E402


def reference_steps_per_second(steps: int, n=20, m=5, instances=10, p=0.4) -> float:
    sparsity = np.array(tms_sparsities(instances))
    probability = torch.tensor(1 - sparsity, dtype=torch.float32)[:, None].expand(instances, n)
    importance = torch.tensor(0.7 ** np.arange(n), dtype=torch.float32)[None, :].expand(instances, n)
    torch.manual_seed(0)
    model = ReferenceModel(instances, n, m, probability, importance, p)
    reference_optimize(model, steps=20)  # warm-up
    start = time.perf_counter()
    reference_optimize(model, steps=steps)
    return steps / (time.perf_counter() - start)


def ours_steps_per_second(steps: int, setups) -> float:
    train(setups, steps=20, progress=False)  # warm-up
    result = train(setups, steps=steps, progress=False)
    return steps / result.seconds


def breakdown(setups, steps: int, batch: int = 1024) -> dict[str, float]:
    """Milliseconds per step of the trainer's parts, each run alone on this machine."""
    device = torch.device("cpu")
    model = _Batched(setups, device)
    shape = model.uniform_shape(batch)
    optimizer = _FlatAdamW([(len(setups), model.m, model.n), (len(setups), model.n)], device, 1e-3, 0.01)
    W, b = optimizer.param_views
    W.normal_(0, 0.3)
    grad_W, grad_b = optimizer.grad_views
    rng = np.random.Generator(np.random.SFC64(0))
    block = torch.from_numpy(rng.random(shape, dtype=np.float32))

    def timed(fn) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        return (time.perf_counter() - start) / steps * 1e3

    def arithmetic():
        x, scale = model.sample(block.clone())
        h, y = model.forward(W, b, x, scale)
        model.gradient(W, x, scale, h, y, grad_W, grad_b)

    with torch.no_grad():
        parts = {
            "draw uniforms (SFC64, 1 thread)": timed(lambda: rng.random(shape, dtype=np.float32)),
            "torch.rand, same numbers": timed(lambda: torch.rand(shape)),
            "sample + forward + gradient": timed(arithmetic),
            "AdamW step": timed(optimizer.step),
        }
    return parts


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--phase-instances", type=int, default=2000)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    setups = [Setup(20, 5, sparsity=s, importance=0.7 ** np.arange(20), p=0.4) for s in tms_sparsities(10)]
    reference, ours = [], []
    for round_ in range(args.rounds):
        reference.append(reference_steps_per_second(args.steps))
        ours.append(ours_steps_per_second(args.steps, setups))
        print(
            f"round {round_}: published loop {reference[-1]:7.1f} steps/s, sim.train {ours[-1]:7.1f} steps/s"
        )
    best_ref, best_ours = max(reference), max(ours)
    print(f"20 features, 5 hidden, 10 instances, batch 1024, p = 0.4 (best of {args.rounds}):")
    print(f"  published loop {best_ref:7.1f} steps/s ({1e3 / best_ref:.2f} ms/step)")
    print(f"  sim.train      {best_ours:7.1f} steps/s ({1e3 / best_ours:.2f} ms/step)")
    print(f"  ratio          {best_ours / best_ref:7.2f}x")

    print("where the time goes (each part alone, ms per step; in training the draw runs in a")
    print("background thread beside the arithmetic, which then has one torch thread):")
    for name, value in breakdown(setups, args.steps).items():
        print(f"  {name:45s} {value:7.3f}")

    rng = np.random.default_rng(0)
    count = args.phase_instances
    phase = [
        Setup(2, 1, sparsity=1 - d, importance=[1.0, r], p=p)
        for d, r, p in zip(
            rng.uniform(0.01, 1, count),
            rng.uniform(0.1, 10, count),
            rng.choice([0.0, 0.15, 0.4], count),
            strict=True,
        )
    ]
    rate = ours_steps_per_second(max(20, args.steps // 5), phase)
    print(
        f"2 features in 1 dim, {count} instances, batch 1024: {rate:.1f} steps/s = "
        f"{rate * count:.0f} instance-steps/s"
    )


if __name__ == "__main__":
    main()
