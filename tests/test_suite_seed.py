"""The suite's hypothesis seed: printed in the report's header, and the one every pytest-xdist worker runs."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


def test_every_worker_runs_with_the_seed_the_header_prints(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    record = "import hypothesis, os, pathlib\n" + "".join(
        f"def test_{i}():\n"
        f"    name = os.environ['PYTEST_XDIST_WORKER'] + '-{i}'\n"
        "    pathlib.Path(os.environ['SEEDS'], name).write_text(str(hypothesis.core.global_force_seed))\n"
        for i in range(6)
    )
    (tmp_path / "test_record.py").write_text(record)
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "load", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env={**os.environ, "SEEDS": str(seeds)},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    header = re.search(
        r"hypothesis seed: (\d+) \(replay with: python -m pytest --hypothesis-seed=\1\)", run.stdout
    )
    assert header, run.stdout
    ran = {path.name: int(path.read_text()) for path in seeds.iterdir()}
    assert len(ran) == 6 and {name.split("-")[0] for name in ran} == {"gw0", "gw1"}
    assert set(ran.values()) == {int(header.group(1))}
