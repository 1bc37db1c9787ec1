"""sim.train against the published TMS training loop on identical work.

    python benchmarks/trainer_speed.py [--steps 500] [--rounds 3]
    python benchmarks/trainer_speed.py --baseline REV [--rounds 3]

Identical work: 20 features, 5 hidden, 10 instances (the notebook's sparsity
sweep, importance 0.7**i), batch 1024, dropout p = 0.4, AdamW lr 1e-3.
The published loop and sim.train (its CPU default, the tiled backend, and the
torch backend) alternate for --rounds rounds in one process (this machine's
timing noise is large); the best round of each is reported, with the ratios.
Also: the phase-comparison workload (2 features in 1 dim, many instances) and
the TMS intro models (5 in 2), with each backend (torch, fused, tiled).

With --baseline, instead: this checkout's trainers against those of git
revision REV (checked out into a temporary worktree) on three workloads,
each backend where it runs (20 in 5, 10 instances, p = 0.4; 5 in 2, 10
instances, p = 0.4; 2 in 1, 2000 instances), each timing in its own process,
the two versions alternately, the median of --rounds: a change to the
trainers shows here whether it cost speed.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from worktree import ROOT, checkout  # noqa: E402

from sim import train  # noqa: E402
from sim.published import ReferenceModel, reference_optimize  # noqa: E402
from sim.trainer import _Batched, _FlatAdamW  # noqa: E402
from theory import Setup  # noqa: E402
from theory.grid import tms_sparsities  # noqa: E402


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


def ours_steps_per_second(steps: int, setups, backend: str) -> float:
    train(setups, steps=20, progress=False, backend=backend)  # warm-up (and the first compile)
    result = train(setups, steps=steps, progress=False, backend=backend)
    return steps / result.seconds


def _timed(fn, steps: int) -> float:
    """Milliseconds per call, best of three runs of `steps` calls."""
    fn()
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        best = min(best, (time.perf_counter() - start) / steps * 1e3)
    return best


def machine_limits() -> dict[str, float]:
    """Peak float32 matmul FLOP/s (1 thread and all) and random numbers per second (1 thread)."""
    threads = torch.get_num_threads()
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    flops = {}
    for count in (1, threads):
        torch.set_num_threads(count)
        flops[count] = 2 * 1024**3 / (_timed(lambda: a @ b, 20) * 1e-3)
    torch.set_num_threads(threads)
    bits = np.random.SFC64(0)
    size = 1 << 20
    return {
        "peak matmul GFLOP/s, 1 thread": flops[1] / 1e9,
        f"peak matmul GFLOP/s, {threads} threads": flops[threads] / 1e9,
        "SFC64 raw 32-bit numbers/s (1e6)": 2
        * size
        / (_timed(lambda: bits.random_raw(size), 20) * 1e-3)
        / 1e6,
        "SFC64 float32 uniforms/s (1e6)": size
        / (_timed(lambda: np.random.Generator(bits).random(size, dtype=np.float32), 20) * 1e-3)
        / 1e6,
        "torch.rand float32/s (1e6)": size / (_timed(lambda: torch.rand(size), 20) * 1e-3) / 1e6,
    }


def breakdown(setups, steps: int, batch: int = 1024) -> dict[str, float]:
    """Milliseconds per step of the torch backend's two sides, each alone on one thread.

    In training they run at once on two cores: the step takes about the larger.
    """
    device = torch.device("cpu")
    model = _Batched(setups, device)
    optimizer = _FlatAdamW([(len(setups), model.m, model.n), (len(setups), model.n)], device, 1e-3, 0.01)
    W, b = optimizer.param_views
    W.normal_(0, 0.3)
    grad_W, grad_b = optimizer.grad_views
    bits = np.random.SFC64(0)
    shape = model.random_shape(batch)
    size = math.prod(shape)

    def integers():
        raw = bits.random_raw((size + 1) // 2).view(np.int32)[:size]
        return torch.from_numpy(raw).view(shape).bitwise_right_shift_(8)

    xn, scale = model.sample(integers())

    def arithmetic():
        hn, y = model.forward(W, b, xn, scale)
        model.gradient(W, xn, scale, hn, y, grad_W, grad_b)
        optimizer.step()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.no_grad():
        parts = {
            "producer: draw integers": _timed(integers, steps),
            "producer: draw + sample the batch": _timed(lambda: model.sample(integers()), steps),
            "consumer: forward + gradient + AdamW": _timed(arithmetic, steps),
        }
    torch.set_num_threads(threads)
    return parts


def useful_flops(n: int, m: int, instances: int, batch: int = 1024) -> float:
    """Multiply-adds of one step's five (m, n) products (W x, W^T h, three in the gradient), as FLOPs."""
    return 5 * 2 * instances * m * n * batch


def tiled_one_thread(setups, steps: int) -> float:
    """Milliseconds per step of the tiled backend on one numba thread."""
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return 1e3 / ours_steps_per_second(steps, setups, "tiled")
    finally:
        numba.set_num_threads(threads)


#: --baseline's workloads: name -> (the setups' Python expression, steps, the backends timed).
WORKLOADS = {
    "20 in 5, 10 instances": (
        "[Setup(20, 5, sparsity=s, importance=0.7 ** np.arange(20), p=0.4) for s in tms_sparsities(10)]",
        300,
        ("tiled", "torch"),
    ),
    "5 in 2, 10 instances": (
        "[Setup(5, 2, sparsity=s, importance=0.9 ** np.arange(5), p=0.4) for s in tms_sparsities(10)]",
        1000,
        ("fused", "tiled", "torch"),
    ),
    "2 in 1, 2000 instances": (
        "[Setup(2, 1, sparsity=1 - d, importance=[1.0, 2.0], p=0.15) for d in np.geomspace(0.01, 1, 2000)]",
        100,
        ("fused", "tiled"),
    ),
}
_TIMING = """
import numpy as np
from sim import train
from theory import Setup
from theory.grid import tms_sparsities
setups = {setups}
train(setups, steps=10, progress=False, backend="{backend}")
result = train(setups, steps={steps}, progress=False, backend="{backend}")
print(len(setups) * {steps} / result.seconds)
"""


def instance_steps_per_second(tree: Path, setups: str, steps: int, backend: str) -> float:
    """Instance-steps per second of sim.train in the checkout at tree, in a process of its own."""
    code = _TIMING.format(setups=setups, steps=steps, backend=backend)
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True, capture_output=True)
    return float(done.stdout.split()[-1])


def versus_baseline(revision: str, rounds: int) -> None:
    with checkout(revision) as baseline:
        print(f"sim.train: baseline {revision} against this checkout, instance-steps/s, median of {rounds}")
        for name, (setups, steps, backends) in WORKLOADS.items():
            for backend in backends:
                rates = {"baseline": [], "this": []}
                for _ in range(rounds):
                    for label, tree in (("baseline", baseline), ("this", ROOT)):
                        rates[label].append(instance_steps_per_second(tree, setups, steps, backend))
                old, new = (statistics.median(rates[k]) for k in ("baseline", "this"))
                print(f"  {name:24s} {backend:6s} baseline {old:10.0f}  this {new:10.0f}  "
                      f"this / baseline {new / old:.2f}", flush=True)  # fmt: skip


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--phase-instances", type=int, default=2000)
    parser.add_argument("--baseline", default=None, help="git revision: compare the trainers against it")
    args = parser.parse_args()
    if args.baseline:
        versus_baseline(args.baseline, args.rounds)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    setups = [Setup(20, 5, sparsity=s, importance=0.7 ** np.arange(20), p=0.4) for s in tms_sparsities(10)]
    rates = {"published loop": [], "sim.train, tiled (CPU default)": [], "sim.train, torch backend": []}
    for round_ in range(args.rounds):
        rates["published loop"].append(reference_steps_per_second(args.steps))
        rates["sim.train, tiled (CPU default)"].append(ours_steps_per_second(args.steps, setups, "tiled"))
        rates["sim.train, torch backend"].append(ours_steps_per_second(args.steps, setups, "torch"))
        print(
            f"round {round_}: " + ", ".join(f"{name} {r[-1]:7.1f}" for name, r in rates.items()) + " steps/s"
        )
    best = {name: max(r) for name, r in rates.items()}
    print(f"20 features, 5 hidden, 10 instances, batch 1024, p = 0.4 (best of {args.rounds}):")
    for name, rate in best.items():
        ratio = rate / best["published loop"]
        print(
            f"  {name:32s} {rate:7.1f} steps/s ({1e3 / rate:.2f} ms/step)  {ratio:6.2f}x the published loop"
        )
    best_ours = best["sim.train, tiled (CPU default)"]

    print("the machine (same process):")
    limits = machine_limits()
    for name, value in limits.items():
        print(f"  {name:45s} {value:9.1f}")
    flops = useful_flops(20, 5, len(setups))
    numbers = math.prod((len(setups), 25, 1024))
    one = tiled_one_thread(setups, args.steps)
    print("tiled backend against the machine:")
    print(f"  one numba thread {one:.3f} ms/step; all threads {1e3 / best_ours:.3f} ms/step")
    print(
        f"  matmul work {flops / 1e6:.1f} MFLOP/step = {flops * best_ours / 1e9:.2f} GFLOP/s achieved, "
        f"{100 * flops * best_ours / 1e9 / list(limits.values())[1]:.1f}% of the peak matmul rate"
    )
    print(
        f"  random numbers {numbers / 1e3:.0f}k/step = {numbers * best_ours / 1e6:.0f}M/s achieved "
        f"(SFC64's raw rate on one thread: {limits['SFC64 raw 32-bit numbers/s (1e6)']:.0f}M/s)"
    )
    print("torch backend, where the time goes (ms per step, each side alone on 1 thread; in training the")
    print("producer runs in a background thread one batch ahead, so a step takes about the larger side):")
    parts = breakdown(setups, args.steps)
    for name, value in parts.items():
        print(f"  {name:45s} {value:7.3f}")
    bound = max(parts["producer: draw + sample the batch"], parts["consumer: forward + gradient + AdamW"])
    torch_rate = best["sim.train, torch backend"]
    print(
        f"  bound from the larger side: {bound:.3f} ms; the torch backend achieves {1e3 / torch_rate:.3f} ms"
    )

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
    steps = max(20, args.steps // 5)
    print(f"2 features in 1 dim, {count} instances, batch 1024 (the phase-comparison workload):")
    rates = {}
    for backend in ("torch", "fused", "tiled"):
        train(phase, steps=5, progress=False, backend=backend)  # warm-up (and the kernels' compile)
        result = train(phase, steps=steps, progress=False, backend=backend)
        rates[backend] = steps * count / result.seconds
        print(f"  {backend:5s} backend {rates[backend]:10.0f} instance-steps/s")
    print(", ".join(f"  {name} / torch {rates[name] / rates['torch']:.2f}x" for name in ("fused", "tiled")))
    sparse_rng = np.random.default_rng(1)
    for low, high in ((0.01, 0.1), (0.001, 0.01)):
        density = np.exp(sparse_rng.uniform(np.log(low), np.log(high), count))
        ratio = sparse_rng.uniform(0.1, 10, count)
        rate = sparse_rng.choice([0.0, 0.15, 0.4], count)
        sparse = [
            Setup(2, 1, sparsity=1 - d, importance=[1.0, r], p=p)
            for d, r, p in zip(density, ratio, rate, strict=True)
        ]
        for backend in ("fused", "tiled"):
            result = train(sparse, steps=steps, progress=False, backend=backend)
            rates[backend] = steps * count / result.seconds
        print(
            f"  densities log-uniform on [{low}, {high}]: fused {rates['fused']:10.0f}, tiled "
            f"{rates['tiled']:10.0f} instance-steps/s; tiled / fused {rates['tiled'] / rates['fused']:.2f}x"
        )
    intro = [Setup(5, 2, sparsity=s, importance=0.9 ** np.arange(5), p=p) for s in tms_sparsities(10)
             for p in (0.0, 0.4)]  # fmt: skip
    print(f"5 features in 2 dims, {len(intro)} instances (configs/tms_intro.toml's chunk for one seed):")
    for backend in ("torch", "fused", "tiled"):
        train(intro, steps=5, progress=False, backend=backend)
        result = train(intro, steps=args.steps, progress=False, backend=backend)
        rates[backend] = args.steps / result.seconds
        print(f"  {backend:5s} backend {rates[backend]:10.1f} steps/s")
    print(", ".join(f"  {name} / torch {rates[name] / rates['torch']:.2f}x" for name in ("fused", "tiled")))
    print("larger models, 10 instances (sparsity 0 to 0.95, importance 0.9**i, p = 0.2):")
    for n, m, size_steps in ((50, 10, 100), (100, 20, 50)):
        larger = [
            Setup(n, m, sparsity=s, importance=0.9 ** np.arange(n), p=0.2) for s in np.linspace(0, 0.95, 10)
        ]
        for backend in ("torch", "tiled"):
            train(larger, steps=3, progress=False, backend=backend)
            result = train(larger, steps=size_steps, progress=False, backend=backend)
            rates[backend] = size_steps / result.seconds
        print(
            f"  {n} x {m}: torch {rates['torch']:7.1f}, tiled {rates['tiled']:7.1f} steps/s; "
            f"tiled / torch {rates['tiled'] / rates['torch']:.2f}x"
        )


if __name__ == "__main__":
    main()
