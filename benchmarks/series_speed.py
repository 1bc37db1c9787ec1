"""The series model's two trainers on the same work in one run: the numba kernel against torch.

    python benchmarks/series_speed.py [--configs configs/series/*.toml] [--steps 200] [--rounds 3]

For each config, every cell of its grid (one chunk, as `tms-dropout sim sweep` trains it) for --steps
steps at the config's batch with sim.series.train_series, backend "fused" (sim.series_kernel) and
"torch" (the baseline), interleaved; prints instance-steps per second for each (median of --rounds)
and their ratio. The kernel is compiled before the first round.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from sim.config import TrainConfig
from sim.series import train_series

ROOT = Path(__file__).resolve().parent.parent


def rate(setups, config: TrainConfig, steps: int, backend: str) -> float:
    start = time.perf_counter()
    train_series(setups, steps=steps, batch=config.batch, lr=config.lr, log_every=100, progress=False,
                 backend=backend)  # fmt: skip
    return len(setups) * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs", nargs="+", default=sorted(str(p) for p in (ROOT / "configs" / "series").glob("*.toml"))
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"instance-steps/s, {args.steps} steps, median of {args.rounds} rounds")
    print(f"{'config':<34} {'cells':>5} {'fused':>9} {'torch':>9} {'ratio':>6}")
    for path in args.configs:
        config = TrainConfig.from_toml(path)
        setups = [config.series_setup(cell) for cell in config.cells()]
        rate(setups[:1], config, 2, "fused")  # compile (or load the cache) outside the timing
        rates = {"fused": [], "torch": []}
        for _ in range(args.rounds):
            for backend in rates:
                rates[backend].append(rate(setups, config, args.steps, backend))
        fused, torch_ = (statistics.median(rates[k]) for k in ("fused", "torch"))
        print(f"{Path(path).stem:<34} {len(setups):>5} {fused:>9.0f} {torch_:>9.0f} {fused / torch_:>6.1f}")


if __name__ == "__main__":
    main()
