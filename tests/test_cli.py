"""The console command end to end: train, save, load, plot, and refuse bad files."""

import io
import os
import re
import subprocess
import sys

import numpy as np
import xarray as xr

from sim.config import TrainConfig
from sim.results import config_of, load
from tests.cli_helpers import run_cli
from theory.progress import Progress

CONFIG = """
[model]
n_features = 3
n_hidden = 2
importance = { decay = 0.8 }

[grid]
sparsity = { tms = 2 }
p = [0.0, 0.4]
seeds = [0, 1]

[train]
steps = 60
log_every = 20
"""


def cli(*args):
    """The installed command in a fresh process, exactly as a user runs it."""
    return subprocess.run([sys.executable, "-m", "tms_dropout", *args], capture_output=True, text=True)


def test_train_writes_a_labelled_dataset_with_its_config_and_plot_draws_it(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(CONFIG)
    out = tmp_path / "run.nc"
    result = cli("sim", "train", str(config), "--out", str(out))
    assert result.returncode == 0, result.stderr
    ds = load(out)
    assert dict(ds.W.sizes) == {"seed": 2, "p": 2, "sparsity": 2, "hidden": 2, "feature": 3}
    assert ds.sparsity.values.tolist() == [0.0, 0.95]
    assert ds.step.values.tolist() == [0, 20, 40, 59]
    assert config_of(ds) == TrainConfig.from_toml(config)
    assert "sum over features" in ds.expected_loss.attrs["convention"]
    assert ds.code_version
    np.testing.assert_allclose(ds.importance.values, 0.8 ** np.arange(3))
    # Metrics were computed from the stored W.
    W = ds.W.sel(seed=1, p=0.4, sparsity=0.95).values
    np.testing.assert_allclose(ds.feature_norm.sel(seed=1, p=0.4, sparsity=0.95), np.linalg.norm(W, axis=0))

    plotted = cli("sim", "plot", str(out), "--seed", "1")
    assert plotted.returncode == 0, plotted.stderr
    assert (tmp_path / "run.png").stat().st_size > 10_000


def test_corrupt_foreign_or_missing_results_file_is_refused(capsys, tmp_path):
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4)
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"a": ("x", [1.0, 2.0])}).to_netcdf(foreign)
    for path, message in [
        (corrupt, f"error: results file {corrupt} is not a readable netCDF file"),
        (foreign, f"error: results file {foreign} is not a tms-dropout training run (kind = None)"),
        (tmp_path / "none.nc", f"error: results file {tmp_path / 'none.nc'} does not exist"),
    ]:
        result = run_cli(capsys, "sim", "plot", str(path))
        assert result.returncode == 2
        assert result.stderr.strip().startswith(message), result.stderr
        assert "Traceback" not in result.stderr


def test_bad_config_is_one_clear_error(capsys, tmp_path):
    config = tmp_path / "bad.toml"
    cases = {
        CONFIG.replace(
            "p = [0.0, 0.4]", "p = [0.0, 1.2]"
        ): f"error: {config}: grid.p[1] = 1.2 is not allowed",
        CONFIG.replace("steps = 60", "steps = 0"): f"error: {config}: train.steps = 0 is not allowed",
        CONFIG.replace("steps = 60", "steps = 60\nweight_decay = -1"): f"{config}: train.weight_decay = -1",
        CONFIG.replace(
            "steps = 60", "steps = 60\nbackend = 'gpu'"
        ): f"{config}: train.backend = 'gpu' is unknown",
        CONFIG.replace("steps = 60", "stepz = 60"): "unknown keys ['stepz'] in [train]",
        CONFIG.replace("[grid]", "[grid]\nwidth = 3"): "unknown keys ['width'] in [grid]",
        "[model\n": "is not valid TOML",
    }
    for text, message in cases.items():
        config.write_text(text)
        result = run_cli(capsys, "sim", "train", str(config), "--out", str(tmp_path / "x.nc"))
        assert result.returncode == 2
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_theory_loss_command_prints_the_exact_loss(capsys):
    result = run_cli(
        capsys,
        "theory",
        "loss",
        "--n-features",
        "2",
        "--n-hidden",
        "1",
        "--sparsity",
        "0.5",
        "--W",
        "[[1, -1]]",
    )
    assert result.returncode == 0
    assert "expected loss (sum over features): 0.0833333333333" in result.stdout


def test_theory_phase_diagram_command_writes_dataset_and_figure(capsys, tmp_path):
    out = tmp_path / "pd.nc"
    result = run_cli(
        capsys,
        "theory",
        "phase-diagram",
        "--points",
        "4",
        "--p",
        "0,0.4",
        "--out",
        str(out),
        "--completeness",
        "1",
    )
    assert result.returncode == 0, result.stderr
    ds = xr.load_dataset(out)
    assert dict(ds.phase.sizes) == {"p": 2, "r": 4, "sparsity": 4}
    assert "p = 0.4, r = 10 (density: phase)" in result.stdout
    assert "completeness, density 1: catalogue" in result.stdout
    assert (tmp_path / "pd.png").stat().st_size > 10_000
    bad = run_cli(capsys, "theory", "phase-diagram", "--density", "1:0.1", "--out", str(out))
    assert bad.returncode == 2 and "must have 0 < LOW < HIGH" in bad.stderr


ONE_GRID = """
[model]
n_features = 3
n_hidden = 2

[grid]
sparsity = [0.97, 0.5]
r = [0.5, 2.0]
p = [0.0, 0.3]
seeds = [0, 1]

[train]
steps = 200
"""


def test_one_config_gives_theory_and_sim_the_same_dims(capsys, tmp_path):
    """The same TOML drives `theory phase-diagram` and `sim sweep`: their shared dims have the same names,
    order and coordinates, so the Datasets align exactly with no renaming or sorting."""
    config = tmp_path / "grid.toml"
    config.write_text(ONE_GRID)
    theory_out, sim_out = tmp_path / "th.nc", tmp_path / "sim.nc"
    result = run_cli(capsys, "theory", "phase-diagram", str(config), "--out", str(theory_out))
    assert result.returncode == 0, result.stderr
    result = run_cli(capsys, "sim", "sweep", str(config), "--out", str(sim_out))
    assert result.returncode == 0, result.stderr
    theory_ds, sim_ds = xr.load_dataset(theory_out), xr.load_dataset(sim_out)
    assert theory_ds.phase.dims == ("p", "r", "sparsity") == sim_ds.sampled_loss.dims[1:]
    theory_ds, sim_ds = xr.align(theory_ds, sim_ds, join="exact")
    np.testing.assert_array_equal(theory_ds.density.values, sim_ds.density.values)
    # the trained models never beat theory's optimum (exact loss, every cell)
    assert (sim_ds.expected_loss >= theory_ds.optimal_loss * (1 - 1e-6)).all()
    bad = run_cli(capsys, "theory", "phase-diagram", str(config), "--p", "0.1", "--out", str(theory_out))
    assert bad.returncode == 2 and "CONFIG describes the grid; leave out --p" in bad.stderr


def test_long_runs_logged_to_a_file_write_progress_lines(tmp_path):
    """stderr redirected to a file (no terminal): plain lines with done/total, rate and time left."""
    config = tmp_path / "run.toml"
    config.write_text(CONFIG)
    log = tmp_path / "sweep.log"
    env = {**os.environ, "TMS_DROPOUT_PROGRESS_SECONDS": "0"}  # every update, not every 10 s
    command = [
        sys.executable,
        "-m",
        "tms_dropout",
        "sim",
        "sweep",
        str(config),
        "--out",
        str(tmp_path / "r.nc"),
    ]
    with open(log, "w") as stderr:
        assert subprocess.run(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env).returncode == 0
    lines = [line for line in log.read_text().splitlines() if line.startswith("sweep: ")]
    assert lines, log.read_text()
    assert re.fullmatch(
        r"sweep: \d+/480 inst-step \(\d+%\), [\d.e+]+ inst-step/s, \d+ s elapsed(, .* left)?", lines[0]
    )
    assert lines[-1].startswith("sweep: 480/480 inst-step (100%)")

    out = tmp_path / "pd.nc"
    args = ["theory", "phase-diagram", "--points", "3", "--p", "0,0.4", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "tms_dropout", *args], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    cells = [line for line in result.stderr.splitlines() if line.startswith("closed-form fits: ")]
    # after each (p, geometry): 9 cells, 5 geometries, 2 p
    assert [line.split()[2] for line in cells] == [f"{9 * k}/90" for k in range(1, 11)]


def test_progress_switch(capsys):
    with Progress(5, "work", "cell", show=False) as silent:
        silent.update(5)
    assert capsys.readouterr().err == ""
    stream = io.StringIO()
    with Progress(4, "work", "cell", stream=stream) as bar:
        bar.interval = 1e9  # a short run: no line before its end, and none at its end
        bar.update(4)
    assert stream.getvalue() == ""


GROUPS = """
[model]
n_features = 2
n_hidden = 2
dropout_groups = [0, 0]

[grid]
sparsity = [0.95, 0.5]
p = [0.0, 0.3]
"""


def test_theory_direct_diagram_command_writes_checked_optima_and_figure(capsys, tmp_path):
    config = tmp_path / "groups.toml"
    config.write_text(GROUPS)
    out = tmp_path / "direct.nc"
    result = run_cli(capsys, "theory", "direct-diagram", str(config), "--starts", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    ds = xr.load_dataset(out)
    assert dict(ds.optimal_loss.sizes) == {"p": 2, "sparsity": 2}
    assert ds.sizes["group"] == 1
    assert "1 dropout group, units (0, 0)" in result.stdout
    assert "Monte Carlo check of every optimum" in result.stdout
    assert (tmp_path / "direct.png").stat().st_size > 10_000
    bad = run_cli(capsys, "theory", "direct-diagram", str(config), "--starts", "0", "--out", str(out))
    assert bad.returncode == 2 and "--starts = 0" in bad.stderr
    config.write_text(GROUPS.replace("[0, 0]", "[0, 0, 1]"))
    bad = run_cli(capsys, "theory", "direct-diagram", str(config), "--out", str(out))
    assert bad.returncode == 2 and "dropout_groups has 3 labels" in bad.stderr


def test_the_command_line_imports_no_heavy_library_before_it_needs_one():
    # `tms-dropout --help` and usage errors answer in a fraction of a second only if importing the
    # command groups (every layer's cli module, and the paper's) pulls in none of these.
    import subprocess
    import sys

    heavy = ("torch", "xarray", "matplotlib", "numba", "jinja2", "scipy", "sympy")
    code = f"import sys, tms_dropout.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
