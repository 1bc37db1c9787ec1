"""How long the command line takes to answer, beside `python -c "import numpy"` in the same run.

    python benchmarks/cli_speed.py [--runs 7]

Each command runs in a fresh process, as a user's shell starts it; the table
gives the median wall time of --runs runs, interleaved so that a busy machine
slows every row alike, and each row's ratio to the numpy import.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CLI = [sys.executable, "-m", "tms_dropout"]
LOSS = [*CLI, "theory", "loss", "--n-features", "2", "--n-hidden", "1", "--W", "[[1, -1]]"]
COMMANDS = {
    'python -c "import numpy" (yardstick)': [sys.executable, "-c", "import numpy"],
    "tms-dropout --help": [*CLI, "--help"],
    "tms-dropout sim sweep --typo (usage error)": [*CLI, "sim", "sweep", "--typo"],
    "tms-dropout theory loss, p = 1.5 (input error)": [*LOSS, "--p", "1.5"],
    "tms-dropout theory loss (computes: imports torch)": LOSS,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, capture_output=True)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(next(iter(times.values())))
    print(f"| command | median of {runs} (s) | / numpy import |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
