"""Sweeps: resumable after kill -9, shardable, refusing foreign results, packing-independent inits."""

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import xarray as xr

from sim import sweep as sweeps
from sim.config import TrainConfig
from sim.results import load
from tests.cli_helpers import run_cli
from theory import InputError, storage

CONFIG = """
[model]
n_features = 3
n_hidden = 2

[grid]
sparsity = {{ tms = 3 }}
p = [0.0, 0.4]
seeds = [0, 1]
r = [0.5, 2.0]

[train]
steps = {steps}
log_every = 100

[sweep]
chunk = 4
"""


def write_config(tmp_path, steps=300, name="sweep.toml"):
    path = tmp_path / name
    path.write_text(CONFIG.format(steps=steps))
    return path


def quiet(_):
    pass


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted sweep of the test config (24 models in 6 chunks)."""
    tmp = tmp_path_factory.mktemp("reference")
    config = TrainConfig.from_toml(write_config(tmp, steps=2000))
    out = sweeps.sweep(config, tmp / "ref.nc", progress=False, log=quiet)
    return load(out)


def test_sweep_has_the_grid_dims_and_every_cell_its_own_setup(reference):
    ds = reference
    assert dict(ds.W.sizes) == {"seed": 2, "p": 2, "r": 2, "sparsity": 3, "hidden": 2, "feature": 3}
    np.testing.assert_allclose(ds.importance.sel(r=2.0), [1.0, 1.0, 2.0])  # r: importance (1, ..., 1, r)
    # Each cell is trained on its own problem: the exact loss is theory's for that cell's setup.
    from theory import Setup, expected_loss

    cell = ds.sel(seed=1, p=0.4, r=0.5).isel(sparsity=2)
    setup = Setup(3, 2, sparsity=float(cell.sparsity), importance=cell.importance.values, p=0.4)
    assert float(cell.expected_loss) == pytest.approx(
        float(expected_loss(setup, cell.W.values, cell.b.values))
    )
    # Trained, not left at init: the final loss is far below the first logged one.
    assert (ds.loss_history.isel(step=-1) < 0.7 * ds.loss_history.isel(step=0)).all()


def test_killed_sweep_resumes_to_the_same_dataset(tmp_path, reference):
    config_path = write_config(tmp_path, steps=2000)
    out = tmp_path / "killed.nc"
    command = [sys.executable, "-m", "tms_dropout", "sim", "sweep", str(config_path), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = sweeps.chunk_folder(out)
    deadline = time.monotonic() + 120
    while not (folder / "chunk-00001.nc").exists():
        assert process.poll() is None, "the sweep ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = sorted(p.name for p in folder.glob("chunk-*.nc"))
    assert 2 <= len(done) < 6 and not out.exists()
    # A chunk killed between its file and its checksum's record counts as not done.
    recorded = json.loads((folder / "manifest.json").read_text())["checksums"]
    assert len(done) - 1 <= len(recorded) <= len(done)

    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"{len(recorded)} chunks already done" in result.stderr
    resumed = load(out)
    assert resumed.drop_attrs().identical(reference.drop_attrs())
    assert not folder.exists()


def _all_chunks(tmp_path, name):
    """A sweep of the test config with every chunk trained and none merged (shard 0 of 1)."""
    config_path = write_config(tmp_path, steps=2000)
    out = tmp_path / name
    sweeps.sweep(TrainConfig.from_toml(config_path), out, shard=(0, 1), progress=False, log=quiet)
    return config_path, out, sweeps.chunk_folder(out)


def test_damaged_or_deleted_chunks_are_named_and_trained_again(capsys, tmp_path, reference):
    config_path, out, folder = _all_chunks(tmp_path, "damaged.nc")
    truncated = folder / "chunk-00002.nc"
    truncated.write_bytes(truncated.read_bytes()[:1000])  # a partial copy
    (folder / "chunk-00003.nc").unlink()
    flipped = folder / "chunk-00005.nc"  # same size, one byte changed
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))

    result = run_cli_ok(capsys, "sim", "sweep", str(config_path), "--out", str(out))
    named = [line for line in result.stderr.splitlines() if line.startswith("chunk ")]
    assert len(named) == 3, result.stderr
    assert "chunk 2" in named[0] and "damaged (its checksum does not match" in named[0]
    assert "chunk 3" in named[1] and "is missing; it will be trained again" in named[1]
    assert "chunk 5" in named[2] and "damaged" in named[2]
    assert "3 chunks already done" in result.stderr
    assert load(out).drop_attrs().identical(reference.drop_attrs())


def test_merge_checks_every_chunk_it_joins(capsys, tmp_path):
    config_path, out, folder = _all_chunks(tmp_path, "merge.nc")
    chunk = folder / "chunk-00004.nc"
    chunk.write_bytes(chunk.read_bytes()[:-100])
    result = run_cli(capsys, "sim", "merge", str(config_path), "--out", str(out))
    assert result.returncode == 2
    named = f"chunk 4 ({chunk}) is damaged (its checksum does not match the manifest's); not used"
    assert named in result.stderr
    assert "error: 1 of 6 chunks are missing or damaged (4)" in result.stderr
    assert not out.exists()


def test_damaged_result_is_moved_aside_and_made_again(capsys, tmp_path, reference):
    config_path = write_config(tmp_path, steps=2000)
    out = tmp_path / "whole.nc"
    out.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(300))  # a copy that broke off
    result = run_cli_ok(capsys, "sim", "sweep", str(config_path), "--out", str(out))
    assert f"results file {out} is not a readable netCDF file (OSError); moved it to" in result.stderr
    assert (tmp_path / "whole.nc.damaged").exists()
    assert load(out).drop_attrs().identical(reference.drop_attrs())


def test_a_second_sweep_of_an_output_in_use_stops_with_one_line(capsys, tmp_path):
    config_path = write_config(tmp_path, steps=50)
    out = tmp_path / "busy.nc"
    lock = sweeps.chunk_folder(out) / "sweep.lock"
    with storage.exclusive(lock, out):  # as a running sweep holds it
        result = run_cli(capsys, "sim", "sweep", str(config_path), "--out", str(out))
        assert result.returncode == 2
        assert result.stderr == f"error: another process is already working on {out} (it holds {lock}); " + (
            "wait for it to finish, or write somewhere else\n"
        )
        merged = run_cli(capsys, "sim", "merge", str(config_path), "--out", str(out))
        assert merged.returncode == 2 and "another process is already working on" in merged.stderr
        # a shard locks only itself
        assert (
            run_cli(capsys, "sim", "sweep", str(config_path), "--out", str(out), "--shard", "0/6").returncode
            == 0
        )
    assert run_cli(capsys, "sim", "sweep", str(config_path), "--out", str(out)).returncode == 0  # released


def test_two_sweeps_started_together_leave_one_correct_result(tmp_path, reference):
    config_path = write_config(tmp_path, steps=2000)
    out = tmp_path / "twice.nc"
    command = [sys.executable, "-m", "tms_dropout", "sim", "sweep", str(config_path), "--out", str(out)]
    runs = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in "ab"
    ]
    for run in runs:
        code, stderr = run.wait(timeout=300), run.stderr.read()
        # each one either did the work, found it done, or was turned away by the other's lock
        assert code == 0 or (code == 2 and "another process is already working on" in stderr), stderr
    assert load(out).drop_attrs().identical(reference.drop_attrs())
    assert not sweeps.chunk_folder(out).exists()


def test_a_damaged_kernel_cache_is_written_again(tmp_path, monkeypatch):
    from sim import fused

    monkeypatch.setenv("TMS_DROPOUT_CACHE", str(tmp_path))
    monkeypatch.setattr(fused, "_KERNELS", {})
    fused.kernels(2, 1)
    (cached,) = (tmp_path / "kernels").glob("fused_2x1_*.py")
    good = cached.read_text()
    cached.write_text(good[: len(good) // 2])  # truncated
    monkeypatch.setattr(fused, "_KERNELS", {})
    fused.kernels(2, 1)
    assert cached.read_text() == good


def test_shards_merge_to_the_same_dataset(capsys, tmp_path, reference):
    config_path = write_config(tmp_path, steps=2000)
    out = tmp_path / "sharded.nc"
    # Shard 1/2 in another folder (as on another machine), then merge both folders.
    elsewhere = tmp_path / "elsewhere.nc"
    for shard, target in (("0/2", out), ("1/2", elsewhere)):
        result = run_cli_ok(capsys, "sim", "sweep", str(config_path), "--out", str(target), "--shard", shard)
        assert "join the shards" in result.stderr
    assert not out.exists()
    merged = run_cli_ok(
        capsys, "sim", "merge", str(config_path), "--out", str(out), str(sweeps.chunk_folder(elsewhere))
    )
    assert "wrote" in merged.stderr
    assert load(out).drop_attrs().identical(reference.drop_attrs())


def run_cli_ok(capsys, *args):
    result = run_cli(capsys, *args)
    assert result.returncode == 0, result.stderr
    return result


def test_merge_with_missing_chunks_names_them(capsys, tmp_path):
    config_path = write_config(tmp_path, steps=50)
    out = tmp_path / "half.nc"
    assert (
        run_cli(capsys, "sim", "sweep", str(config_path), "--out", str(out), "--shard", "0/3").returncode == 0
    )
    result = run_cli(capsys, "sim", "merge", str(config_path), "--out", str(out))
    assert result.returncode == 2
    assert "error: 4 of 6 chunks are missing or damaged (1, 2, 4, 5); run their shards" in result.stderr


def test_results_of_another_config_are_refused(capsys, tmp_path):
    config_path = write_config(tmp_path, steps=50)
    other_path = write_config(tmp_path, steps=60, name="other.toml")
    out = tmp_path / "run.nc"
    # A chunk folder from another config (a sweep interrupted after its first shard) is not mixed in.
    assert (
        run_cli(capsys, "sim", "sweep", str(other_path), "--out", str(out), "--shard", "0/6").returncode == 0
    )
    result = run_cli(capsys, "sim", "sweep", str(config_path), "--out", str(out))
    assert result.returncode == 2
    assert "holds chunks of another config; refusing to mix them" in result.stderr
    # A finished Dataset of another config is not overwritten.
    other_out = tmp_path / "other.nc"
    assert run_cli(capsys, "sim", "sweep", str(other_path), "--out", str(other_out)).returncode == 0
    result = run_cli(capsys, "sim", "sweep", str(config_path), "--out", str(other_out))
    assert result.returncode == 2
    assert "holds a sweep of another config" in result.stderr
    # The same config again is a no-op.
    again = run_cli(capsys, "sim", "sweep", str(other_path), "--out", str(other_out))
    assert again.returncode == 0 and "already holds this sweep" in again.stderr


def test_a_cells_init_does_not_depend_on_the_packing(tmp_path):
    config = TrainConfig.from_toml(write_config(tmp_path))
    all_at_once = sweeps.initial_weights(config, range(24))
    np.testing.assert_array_equal(sweeps.initial_weights(config, [7, 3]), all_at_once[[7, 3]])
    # Different cells (and seeds) start differently; the scale is the notebook's for 3 instances.
    assert len({row.tobytes() for row in all_at_once}) == 24
    assert all_at_once.std() == pytest.approx(np.sqrt(2 / (3 * 2 + 3 * 2)), rel=0.25)


def test_automatic_chunks_are_even_and_fit_the_budget(tmp_path):
    text = (
        CONFIG.format(steps=10)
        .replace("chunk = 4", "")
        .replace("sparsity = { tms = 3 }", "sparsity = { density = [0.01, 1.0, 40] }")
    )
    path = tmp_path / "auto.toml"
    path.write_text(text)
    config = TrainConfig.from_toml(path)
    plan = sweeps.plan(config, "cpu")
    assert plan.n_cells == 320
    assert plan.chunk == 320  # one chunk: 320 small models fit the CPU budget
    big = TrainConfig.from_dict({**config.to_dict(), "batch": 65536})
    big_plan = sweeps.plan(big, "cpu")
    assert big_plan.n_chunks > 1
    sizes = [len(big_plan.cells_of(i)) for i in range(big_plan.n_chunks)]
    assert sum(sizes) == 320 and max(sizes) - min(sizes) <= 1
    assert big_plan.chunk * sweeps._BYTES_PER_UNIT * 65536 * 5 <= sweeps._CPU_BUDGET


def test_a_gpu_chunk_is_sized_to_the_cards_memory(tmp_path, monkeypatch):
    """The CUDA path of the automatic chunk size, forced on CPU: up to 8 GiB, at most a quarter of a card."""
    batch = 2**22
    text = CONFIG.format(steps=10).replace("chunk = 4", "").replace("[train]", f"[train]\nbatch = {batch}")
    path = tmp_path / "gpu.toml"
    path.write_text(text)
    config = TrainConfig.from_toml(path)
    per_cell = sweeps._BYTES_PER_UNIT * batch * 5  # 503 MB: 3 features + 2 hidden
    monkeypatch.setattr(sweeps, "resolve_device", lambda device: torch.device("cuda"))
    # (card's memory, cells per chunk) for 24 cells: 8 GiB hold 17 cells (2 chunks of 12) however large
    # the card; a quarter of an 8 GiB card holds 4; of a 2 GiB card 1
    for total, chunk in ((141 * 2**30, 12), (2**33, 4), (2**31, 1)):
        card = SimpleNamespace(total_memory=total)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev, card=card: card)
        plan = sweeps.plan(config, "cuda")
        assert plan.device == "cuda"
        assert plan.chunk == chunk, total
        assert plan.chunk * per_cell <= min(8 * 2**30, total // 4)


def test_submit_runs_the_shards_locally_with_submitit(capsys, tmp_path, reference):
    pytest.importorskip("submitit")
    config_path = write_config(tmp_path, steps=2000)
    out = tmp_path / "submitted.nc"
    result = run_cli(
        capsys, "sim", "submit", str(config_path), "--out", str(out), "--shards", "2", "--cluster", "local"
    )
    assert result.returncode == 0, result.stderr
    assert "submitted 2 shards to local" in result.stderr
    assert xr.load_dataset(out).drop_attrs().identical(reference.drop_attrs())


def test_importance_axis_may_be_log_spaced(tmp_path):
    path = tmp_path / "log.toml"
    path.write_text(CONFIG.format(steps=10).replace("r = [0.5, 2.0]", "r = { log = [0.1, 10.0, 3] }"))
    assert TrainConfig.from_toml(path).r == pytest.approx((0.1, 1.0, 10.0))
    for bad in ("{ log = [0.1, 10.0] }", "{ log = [0.0, 1.0, 3] }", "{ lin = [0.1, 1.0, 3] }"):
        path.write_text(CONFIG.format(steps=10).replace("r = [0.5, 2.0]", f"r = {bad}"))
        with pytest.raises(InputError, match=r"grid.r = .* must be a list of numbers or \{ log"):
            TrainConfig.from_toml(path)
    # r has one meaning, importance (1, ..., 1, r): a model importance with it is refused
    path.write_text(
        CONFIG.format(steps=10).replace("n_hidden = 2", "n_hidden = 2\nimportance = [1.0, 0.8, 0.6]")
    )
    with pytest.raises(InputError, match=r"log.toml: grid.r sets the importance to \(1, ..., 1, r\)"):
        TrainConfig.from_toml(path)


def test_shards_finishing_together_wait_for_the_manifest_instead_of_failing(tmp_path):
    """While one shard records its chunk's checksum, another shard's record waits, then lands too."""
    config_path, out, folder = _all_chunks(tmp_path, "shards.nc")
    config = TrainConfig.from_toml(config_path)
    store = sweeps.Store(folder, sweeps.plan(config, "cpu"), log=quiet)
    chunk = xr.load_dataset(store.path(0))
    recorded = json.loads(store.manifest_path.read_text())["checksums"]
    del recorded["0"]
    store.manifest_path.write_text(
        json.dumps({**sweeps.Plan(config, 4, "cpu").manifest(), "checksums": recorded})
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import fcntl, time; f = open({str(folder / 'manifest.lock')!r}, 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(1.5)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    store.write(0, chunk)
    assert time.monotonic() - started > 0.5  # it waited for the other writer
    holder.wait()
    assert set(json.loads(store.manifest_path.read_text())["checksums"]) == {str(i) for i in range(6)}
