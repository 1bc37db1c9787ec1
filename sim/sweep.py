"""Sweeps: a config's whole grid trained in chunks, resumable, shardable.

The grid's cells (TrainConfig.cells(), C order) are cut into chunks of
`chunk` instances that are trained together. Everything a chunk's numbers
depend on is fixed by the config and the chunk's index, never by how the
work is scheduled:

- each cell's initial W comes from its own generator, seeded by (seed, the
  cell's index within its seed), with the notebook's xavier-normal scale
  for one instance per sparsity value (sim.trainer.tms_init);
- each chunk's data stream is seeded by its index;
- the chunk size is resolved once (from the config, or sized to the device)
  and written to the sweep's manifest, which a resumed or sharded run reuses.

So a sweep killed at any moment and started again redoes at most the chunk
that was in flight, and ends with the same Dataset as an uninterrupted run.
Finished chunks live in OUT.chunks/ (one netCDF file each, written
atomically) until the final Dataset is written.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from sim import results
from sim.config import TrainConfig
from sim.trainer import expected_losses, resolve_backend, resolve_device, sampled_loss, train
from theory import InputError

CHUNK_KIND = "tms-dropout sweep chunk"
#: Fresh samples per model for the stored sampled loss.
SAMPLED_N = 200_000
#: Bytes of live training tensors per instance and per batch row and feature/hidden unit (float32,
#: about six tensors of (features + hidden) x batch); the basis of the automatic chunk size.
_BYTES_PER_UNIT = 4 * 6
_CPU_BUDGET = 64 * 2**20
_CUDA_BUDGET = 8 * 2**30
_DATA_KEY = 0x7D0
_SAMPLE_KEY = 0x5A3


@dataclass(frozen=True)
class Plan:
    """How a config's cells are packed: chunk size and count, and the device type."""

    config: TrainConfig
    chunk: int
    device: str

    @property
    def n_cells(self) -> int:
        return self.config.n_cells

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.n_cells / self.chunk)

    def cells_of(self, index: int) -> range:
        return range(index * self.chunk, min(self.n_cells, (index + 1) * self.chunk))

    @property
    def backend(self) -> str:
        """The trainer this plan's chunks use (fixed by the config's backend and the device type)."""
        c = self.config
        return resolve_backend(c.backend, torch.device(self.device), c.n_features, c.n_hidden)

    def manifest(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "chunk": self.chunk,
            "device": torch.device(self.device).type,
            "backend": self.backend,  # the trainers' random streams differ: never mixed in one sweep
        }


def plan(config: TrainConfig, device: str | None = None) -> Plan:
    """Resolve the device and the chunk size (the config's, or what fits the device's memory budget)."""
    dev = resolve_device(device or config.device)
    n_cells = config.n_cells
    if config.chunk is not None:
        size = config.chunk
    else:
        per_instance = _BYTES_PER_UNIT * config.batch * (config.n_features + config.n_hidden)
        budget = _CPU_BUDGET
        if dev.type == "cuda":
            budget = min(_CUDA_BUDGET, torch.cuda.get_device_properties(dev).total_memory // 4)
        size = max(1, budget // per_instance)
    # Even chunks: the same number of chunks, none much smaller than the others.
    size = min(size, n_cells)
    size = math.ceil(n_cells / math.ceil(n_cells / size))
    return Plan(config, size, str(dev))


def _seed_of(*keys: int) -> int:
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> 1)


def initial_weights(config: TrainConfig, cells: Sequence[int]) -> np.ndarray:
    """Each cell's starting W, (len(cells), m, n): its own generator, the notebook's scale."""
    n, m = config.n_features, config.n_hidden
    per_seed = config.n_cells // len(config.seeds)
    std = math.sqrt(2.0 / (n * m + len(config.sparsity) * m))
    out = np.empty((len(cells), m, n), dtype=np.float32)
    for row, cell in enumerate(cells):
        seed = config.seeds[cell // per_seed]
        g = torch.Generator().manual_seed(_seed_of(seed, cell % per_seed))
        out[row] = (torch.randn((n, m), generator=g) * std).T.numpy()
    return out


def train_chunk(plan_: Plan, index: int, on_steps=None) -> xr.Dataset:
    """Train one chunk; its cells' W, b, loss history and losses, on a flat `cell` dim."""
    config = plan_.config
    cells = plan_.cells_of(index)
    all_cells = config.cells()
    setups = [all_cells[c].setup for c in cells]
    result = train(
        setups,
        steps=config.steps,
        batch=config.batch,
        lr=config.lr,
        weight_decay=config.weight_decay,
        seed=_seed_of(_DATA_KEY, index),
        device=plan_.device,
        log_every=config.log_every,
        init=initial_weights(config, cells),
        progress=False,
        on_steps=on_steps,
        backend=plan_.backend,
    )
    sampled, stderr = sampled_loss(
        setups,
        result.W,
        result.b,
        n_samples=SAMPLED_N,
        seed=_seed_of(_SAMPLE_KEY, index),
        device=plan_.device,
        backend=plan_.backend,
    )
    expected = expected_losses(setups, result.W, result.b)
    return xr.Dataset(
        {
            "W": (("cell", "hidden", "feature"), result.W),
            "b": (("cell", "feature"), result.b),
            "loss_history": (("cell", "step"), result.loss_history),
            "sampled_loss": ("cell", sampled),
            "sampled_loss_stderr": ("cell", stderr),
            "expected_loss_lower": ("cell", expected.lower),
            "expected_loss_upper": ("cell", expected.upper),
        },
        coords={"cell": np.asarray(cells), "step": result.log_steps},
        attrs={
            "kind": CHUNK_KIND,
            "manifest": json.dumps(plan_.manifest(), sort_keys=True),
            "chunk_index": index,
            "exact_loss": int(expected.exact),
            "code_version": results.code_version(),
            "train_seconds": result.seconds,
        },
    )


class Store:
    """The chunk folder of one sweep: its manifest and finished chunks."""

    def __init__(self, folder: Path, plan_: Plan):
        self.folder, self.plan = folder, plan_
        self.manifest_text = json.dumps(plan_.manifest(), sort_keys=True)

    def path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:05d}.nc"

    def open(self) -> Store:
        """Create the folder and manifest, or check that an existing one belongs to this plan."""
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest = self.folder / "manifest.json"
        try:
            with open(manifest, "x") as f:  # exclusive: concurrent shards agree on one manifest
                f.write(self.manifest_text)
        except FileExistsError:
            self.check()
        return self

    def check(self) -> None:
        """An error unless the folder's manifest is this plan's."""
        found = _read_manifest(self.folder)
        if found == json.loads(self.manifest_text):
            return
        if isinstance(found, dict) and found.get("config") == self.plan.config.to_dict():
            raise InputError(
                f"{self.folder} holds chunks of this config packed or trained differently "
                f"(chunk {found.get('chunk')} on {found.get('device')}, backend {found.get('backend')}; "
                f"here chunk {self.plan.chunk} on {self.plan.device}, backend {self.plan.backend}); set "
                "[sweep] chunk, --device and [train] backend to match, or use another --out"
            )
        raise InputError(
            f"{self.folder} holds chunks of another config; refusing to mix them. "
            "Use another --out, or remove that folder to start over"
        )

    def done(self) -> set[int]:
        return {i for i in range(self.plan.n_chunks) if self.path(i).exists()}

    def read(self, index: int) -> xr.Dataset:
        chunk = xr.load_dataset(self.path(index))
        if chunk.attrs.get("kind") != CHUNK_KIND or chunk.attrs.get("manifest") != self.manifest_text:
            raise InputError(f"{self.path(index)} is not a chunk of this sweep; refusing to mix it in")
        return chunk


def _progress(total: int, show: bool | None):
    show = sys.stderr.isatty() if show is None else show
    return tqdm(total=total, disable=not show, desc="sweep", unit="inst-step", unit_scale=True)


def run_chunks(plan_: Plan, store: Store, indices: Sequence[int], progress: bool | None = None) -> None:
    """Train the chunks among `indices` that are not yet in the store, saving each as it finishes."""
    done = store.done()
    todo = [i for i in indices if i not in done]
    steps = plan_.config.steps
    sizes = {i: len(plan_.cells_of(i)) for i in todo}
    with _progress(sum(sizes.values()) * steps, progress) as bar:
        for index in todo:
            before = bar.n
            chunk = train_chunk(plan_, index, on_steps=lambda k, size=sizes[index]: bar.update(k * size))
            results.save(chunk, store.path(index))
            bar.update(before + sizes[index] * steps - bar.n)


def assemble(plan_: Plan, chunks: Sequence[xr.Dataset]) -> xr.Dataset:
    """The sweep's Dataset from its chunks (in index order): grid dims, metrics, config."""
    config = plan_.config
    flat = xr.concat(chunks, dim="cell", data_vars="all", coords="minimal", combine_attrs="drop")
    exact = bool(chunks[0].attrs["exact_loss"])
    arrays = {name: flat[name].values for name in flat.data_vars}
    return results.sweep_dataset(
        config,
        plan_.device,
        W=arrays["W"],
        b=arrays["b"],
        loss_history=arrays["loss_history"],
        log_steps=flat.step.values,
        sampled=(arrays["sampled_loss"], arrays["sampled_loss_stderr"], SAMPLED_N),
        expected=(arrays["expected_loss_lower"], arrays["expected_loss_upper"], exact),
    )


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def chunk_folder(out: Path) -> Path:
    return out.with_name(out.name + ".chunks")


def existing_result(out: Path, config: TrainConfig) -> bool:
    """True when OUT already holds this config's finished sweep; an error when it holds another's."""
    if not out.exists():
        return False
    ds = results.load(out)
    if results.config_of(ds) != config:
        raise InputError(
            f"{out} holds a sweep of another config; refusing to overwrite or mix it. Use another --out"
        )
    return True


def sweep(
    config: TrainConfig,
    out: str | Path,
    *,
    device: str | None = None,
    shard: tuple[int, int] | None = None,
    progress: bool | None = None,
    log=print,
) -> Path | None:
    """Run (or resume) the sweep and write OUT; with shard=(i, N), train only chunks i, i+N, ... .

    Returns OUT when the Dataset was written (or already there); None for a
    shard, whose chunks a later merge() joins.
    """
    out = Path(out)
    if existing_result(out, config):
        log(f"{out} already holds this sweep; nothing to do")
        return out
    plan_ = plan(config, device)
    recorded = _read_manifest(chunk_folder(out))
    if (
        config.chunk is None
        and recorded
        and recorded.get("config") == config.to_dict()
        and recorded.get("device") == torch.device(plan_.device).type
    ):
        plan_ = Plan(config, int(recorded["chunk"]), plan_.device)  # the size this sweep started with
    store = Store(chunk_folder(out), plan_).open()
    indices = range(plan_.n_chunks)
    if shard is not None:
        i, n = shard
        if not (isinstance(i, int) and isinstance(n, int) and n >= 1 and 0 <= i < n):
            raise InputError(f"shard {i}/{n} is not allowed; use i/N with 0 <= i < N")
        indices = range(i, plan_.n_chunks, n)
    done = store.done()
    log(
        f"{plan_.n_cells} models in {plan_.n_chunks} chunks of <= {plan_.chunk} on {plan_.device}; "
        f"{len(done)} chunks already done" + (f"; shard {shard[0]}/{shard[1]}" if shard else "")
    )
    run_chunks(plan_, store, indices, progress)
    if shard is not None:
        log(f"shard {shard[0]}/{shard[1]} done; join the shards with `tms-dropout sim merge`")
        return None
    return merge(config, out, log=log)


def merge(
    config: TrainConfig,
    out: str | Path,
    *,
    folders: Sequence[str | Path] = (),
    log=print,
) -> Path:
    """Join a sweep's chunks (from OUT.chunks/ and any other folders) into OUT."""
    out = Path(out)
    if existing_result(out, config):
        log(f"{out} already holds this sweep; nothing to do")
        return out
    folders = [chunk_folder(out), *map(Path, folders)]
    manifests = {f: _read_manifest(f) for f in folders}
    first = next((m for m in manifests.values() if m), None)
    if first is None:
        raise InputError(f"no chunks of this sweep found in {', '.join(map(str, folders))}")
    if first.get("config") != config.to_dict():
        raise InputError(f"the chunks in {folders} are of another config; refusing to mix them")
    plan_ = Plan(config, int(first["chunk"]), str(first["device"]))
    found = {}
    for folder, manifest in manifests.items():
        if manifest is None:
            continue
        store = Store(folder, plan_)
        store.check()
        for index in sorted(store.done()):
            found.setdefault(index, store)
    missing = sorted(set(range(plan_.n_chunks)) - set(found))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise InputError(f"{len(missing)} of {plan_.n_chunks} chunks are missing ({shown}); run their shards")
    ds = assemble(plan_, [found[i].read(i) for i in range(plan_.n_chunks)])
    results.save(ds, out)
    shutil.rmtree(chunk_folder(out), ignore_errors=True)
    log(f"wrote {out}")
    return out
