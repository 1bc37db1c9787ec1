"""The runs behind the paper: each a command that writes Datasets, run once and reused while nothing changes.

A run is declared in `paper/runs.toml`:

    [exact_checks]
    command = "python scripts/exact_checks.py --out {out}/checks.nc"
    quick = "python scripts/exact_checks.py --out {out}/checks.nc --cases 12"
    reads = ["configs/compare/two_in_one.toml"]   # files besides the code
    datasets = { exact_checks = "checks.nc" }      # alias = path under {out}

`{out}` is the run's folder. The run is reused when its key (the command,
the content of the files it reads, of the script it runs, and of the
packages' code: every Python file of theory/, sim/, compare/ and
tms_dropout/, and pyproject.toml) is the one recorded beside its outputs; otherwise it runs
again, in a `.partial` folder that becomes the run's folder only when the
command succeeds (a failed or killed run is never read; a resumable command
resumes from what the `.partial` folder holds when run again with the same
key).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import xarray as xr

from theory.errors import InputError
from theory.storage import save_text

#: The checkout the paper is built from (scripts/ and configs/ are not installed with the package).
ROOT = Path(__file__).resolve().parent.parent
RUNS_FILE = Path(__file__).resolve().parent / "runs.toml"
#: Folders whose Python files are the code every run's key holds (a script a command runs is added).
CODE = ("theory", "sim", "compare", "tms_dropout")
KEY_FILE = "run.json"


@dataclass(frozen=True)
class Run:
    """One command behind the paper and the Datasets it writes."""

    name: str
    command: str
    quick: str
    datasets: dict[str, str]
    reads: tuple[str, ...] = ()

    def command_for(self, quick: bool) -> str:
        return self.quick if quick else self.command


@dataclass
class RunOutput:
    """Where one run's outputs are and what made them."""

    run: Run
    folder: Path
    command: str
    key: str
    seconds: float
    reused: bool
    datasets: dict[str, Path] = field(default_factory=dict)
    #: CPU seconds (user + system) of the command and the processes it waited for; None where not
    #: recorded (a record written before it was).
    cpu_seconds: float | None = None


def load_runs(path: Path = RUNS_FILE) -> dict[str, Run]:
    """The runs declared in `path`, by name; every dataset alias is unique."""
    with open(path, "rb") as f:
        table = tomllib.load(f)
    runs, aliases = {}, {}
    for name, spec in table.items():
        unknown = set(spec) - {"command", "quick", "datasets", "reads"}
        if unknown or "command" not in spec or "datasets" not in spec:
            raise InputError(
                f"{path}: run [{name}] needs `command` and `datasets` (and may have `quick`, `reads`)"
                + (f"; unknown keys {sorted(unknown)}" if unknown else "")
            )
        run = Run(
            name=name,
            command=spec["command"],
            quick=spec.get("quick", spec["command"]),
            datasets=dict(spec["datasets"]),
            reads=tuple(spec.get("reads", ())),
        )
        for command in (run.command, run.quick):
            if "{out}" not in command:
                raise InputError(f"{path}: run [{name}]'s command does not write under {{out}}: {command}")
        for alias in run.datasets:
            if alias in aliases:
                raise InputError(f"{path}: dataset {alias!r} of [{name}] is also one of [{aliases[alias]}]")
            aliases[alias] = name
        runs[name] = run
    return runs


def _digest_files(paths) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def code_digest() -> str:
    """SHA-256 of the packages' code: what every run's outputs depend on besides its command and inputs."""
    files = [p for folder in CODE for p in (ROOT / folder).rglob("*.py")]
    return _digest_files([*files, ROOT / "pyproject.toml"])


def run_key(run: Run, quick: bool, code: str) -> str:
    """The run's key: its command, the files it reads, the scripts it runs, and `code` (code_digest)."""
    command = run.command_for(quick)
    reads = [ROOT / part for part in shlex.split(command) if part.endswith(".py") and (ROOT / part).is_file()]
    for pattern in run.reads:
        matched = sorted(ROOT.glob(pattern))
        if not matched:
            raise InputError(f"run [{run.name}] reads {pattern}, which matches no file under {ROOT}")
        reads.extend(matched)
    payload = {"command": command, "reads": _digest_files(reads), "code": code}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _argv(command: str, out: Path) -> list[str]:
    argv = [part.replace("{out}", str(out)) for part in shlex.split(command)]
    if argv[0] == "python":
        argv[0] = sys.executable
    elif argv[0] == "tms-dropout":
        argv[:1] = [sys.executable, "-m", "tms_dropout.cli"]
    return argv


#: The variables that set how many threads numba, torch (OpenMP) and the BLAS libraries start.
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def with_threads(env: dict[str, str], threads: int | None) -> dict[str, str]:
    """env with its numba, OpenMP and BLAS threads (THREAD_VARIABLES) capped at `threads`; as it is for
    None."""
    return env if threads is None else {**env, **dict.fromkeys(THREAD_VARIABLES, str(threads))}


#: Runs at once by default: two (one on a machine of one core). On 2 cores one thread per run wastes less
#: than two per run, one run after another (the quick build in one script: 388 s with 2 jobs, 476 s with
#: 1); the runs start longest first (paper/runs.toml), so the longest is not left to run alone at the end.
DEFAULT_JOBS = min(2, os.cpu_count() or 1)


def thread_share(jobs: int) -> int | None:
    """The threads each of `jobs` runs at once may start: its share of the cores (None: one run at a
    time, which starts as many as it likes). A thread waiting for a core another run holds spins."""
    return None if jobs <= 1 else max(1, (os.cpu_count() or 1) // jobs)


@dataclass(frozen=True)
class Finished:
    """How a run's command ended: its exit status and the CPU seconds it used (user + system, its own
    and those of the processes it waited for; None where the platform cannot say: no os.wait4)."""

    status: int
    cpu_seconds: float | None


def _stream(argv: list[str], log: Path, threads: int | None = None) -> Finished:
    """Run argv in the checkout, its output to `log` and to stderr (line by line, so progress shows);
    with `threads`, its numba, OpenMP and BLAS threads at most that many."""
    env = None if threads is None else with_threads(dict(os.environ), threads)
    with open(log, "w") as f:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        for line in process.stdout:
            f.write(line)
            f.flush()
            sys.stderr.write(f"    {log.parent.name.removesuffix('.partial')}: {line}")
        process.stdout.close()
        if not hasattr(os, "wait4"):
            return Finished(process.wait(), None)
        _, status, usage = os.wait4(process.pid, 0)  # this child's usage, not every child's of the build
        process.returncode = os.waitstatus_to_exitcode(status)
        return Finished(process.returncode, usage.ru_utime + usage.ru_stime)


def ensure(run: Run, folder: Path, quick: bool, code: str, threads: int | None = None) -> RunOutput:
    """The run's outputs in `folder`: reused when its key matches, else made by running its command
    (with at most `threads` threads of each kind where given: thread_share)."""
    key = run_key(run, quick, code)
    command = run.command_for(quick)
    paths = {alias: folder / rel for alias, rel in run.datasets.items()}
    record = folder / KEY_FILE
    if record.exists():
        saved = json.loads(record.read_text())
        if saved.get("key") == key and all(p.exists() for p in paths.values()):
            return RunOutput(
                run, folder, saved["command"], key, saved["seconds"], True, paths, saved.get("cpu_seconds")
            )
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        marker = partial / "key"
        if not marker.exists() or json.loads(marker.read_text()).get("key") != key:
            shutil.rmtree(partial)  # another command's or another code version's leftovers
    partial.mkdir(parents=True, exist_ok=True)
    save_text(json.dumps({"key": key}), partial / "key")
    shown = command.replace("{out}", str(_shown(folder)))
    _say(f"run {run.name}: {shown}")
    start = time.perf_counter()
    finished = _stream(_argv(command, partial), partial / "log.txt", threads)
    seconds = time.perf_counter() - start
    if finished.status != 0:
        raise RunFailed(
            f"run {run.name} failed (exit status {finished.status}) after {seconds:.0f} s; its output is in "
            f"{partial / 'log.txt'}"
        )
    missing = [rel for rel in run.datasets.values() if not (partial / rel).exists()]
    if missing:
        raise RunFailed(f"run {run.name} succeeded but wrote no {', '.join(missing)} under {partial}")
    (partial / "key").unlink()
    entry = {"key": key, "command": shown, "seconds": seconds, "cpu_seconds": finished.cpu_seconds}
    save_text(json.dumps(entry), partial / KEY_FILE)
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    cpu = "" if finished.cpu_seconds is None else f" (CPU {finished.cpu_seconds:.0f} s)"
    _say(f"run {run.name}: done in {seconds:.0f} s{cpu}")
    return RunOutput(run, folder, shown, key, seconds, False, paths, finished.cpu_seconds)


def _say(line: str) -> None:
    """One line to stderr in one write (print writes the newline apart: runs at once would run lines
    together)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _shown(path: Path) -> Path:
    """`path` relative to the working directory when it is under it (commands read as typed)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


class RunFailed(RuntimeError):
    """A run's command failed: the message names the run and its log."""


class Data:
    """The paper's Datasets by alias, each run (or reused) the first time it is asked for."""

    def __init__(self, runs: dict[str, Run], out: Path, quick: bool):
        self.runs = runs
        self.folder = out / "runs" / ("quick" if quick else "full")
        self.quick = quick
        self.outputs: dict[str, RunOutput] = {}
        self.used: dict[str, None] = {}  # the runs whose Datasets were asked for, in that order
        self._datasets: dict[str, xr.Dataset] = {}
        self._code = code_digest()
        self._alias_run = {alias: run for run in runs.values() for alias in run.datasets}

    def prepare(self, jobs: int | None = None) -> None:
        """Run (or reuse) every declared run, `jobs` at a time (None: DEFAULT_JOBS) in their declared
        order, each on its share of the cores (thread_share); a failure is raised once all have ended."""
        jobs = DEFAULT_JOBS if jobs is None else jobs
        pending = [run for run in self.runs.values() if run.name not in self.outputs]
        threads = thread_share(jobs)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {
                pool.submit(ensure, run, self.folder / run.name, self.quick, self._code, threads): run
                for run in pending
            }
            errors = []
            for future, run in futures.items():
                try:
                    self.outputs[run.name] = future.result()
                except Exception as error:  # every run gets to finish; the first failure is raised
                    errors.append(error)
        if errors:
            raise errors[0]

    def output(self, alias: str) -> RunOutput:
        if alias not in self._alias_run:
            raise InputError(f"no run writes a dataset called {alias!r} (runs: {', '.join(self.runs)})")
        run = self._alias_run[alias]
        self.used.setdefault(run.name)
        if run.name not in self.outputs:
            self.outputs[run.name] = ensure(run, self.folder / run.name, self.quick, self._code)
        return self.outputs[run.name]

    def __getitem__(self, alias: str) -> xr.Dataset:
        if alias not in self._datasets:
            self._datasets[alias] = xr.load_dataset(self.output(alias).datasets[alias])
        return self._datasets[alias]
