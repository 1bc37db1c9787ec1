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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from sim import results
from sim.config import TrainConfig
from sim.trainer import expected_losses, resolve_backend, resolve_device, sampled_loss, train
from theory import InputError, storage
from theory.progress import Progress

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
        if c.series is not None:  # sim.series's trainers: its numba kernel unless torch is asked for
            return "torch" if c.backend == "torch" else "fused"
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
    if config.series is not None and (device or config.device) not in ("auto", "cpu"):
        raise InputError(f"device {device or config.device!r}: the series model trains on the CPU only")
    dev = torch.device("cpu") if config.series is not None else resolve_device(device or config.device)
    n_cells = config.n_cells
    if config.chunk is not None:
        size = config.chunk
    else:
        width = config.n_features + config.n_hidden
        if config.series is not None:  # the stream after every block, and every block's units
            width += config.series.blocks * (config.n_hidden + config.series.units)
        per_instance = _BYTES_PER_UNIT * config.batch * width
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
    if config.series is not None:
        return _train_series_chunk(plan_, index, on_steps)
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
    sampled = sampled_loss(
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
            "sampled_loss": ("cell", sampled.mean),
            "sampled_loss_stderr": ("cell", sampled.stderr),
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


def _train_series_chunk(plan_: Plan, index: int, on_steps=None) -> xr.Dataset:
    """train_chunk for a config with a [series] table (sim.series_runs)."""
    from sim import series_runs

    chunk, seconds = series_runs.train_chunk(
        plan_,
        plan_.cells_of(index),
        data_seed=_seed_of(_DATA_KEY, index),
        sample_seed=_seed_of(_SAMPLE_KEY, index),
        samples=SAMPLED_N,
        seed_of=_seed_of,
        on_steps=on_steps,
    )
    chunk.attrs.update(
        kind=CHUNK_KIND,
        manifest=json.dumps(plan_.manifest(), sort_keys=True),
        chunk_index=index,
        code_version=results.code_version(),
        train_seconds=seconds,
    )
    return chunk


class Store:
    """The chunk folder of one sweep: its manifest (the plan and each finished chunk's SHA-256) and chunks.

    A chunk counts as done only when its file's checksum matches the one the
    manifest recorded after the file was written: a chunk that is missing,
    truncated, altered or never recorded (killed between the two writes) is
    named and trained again. The manifest is rewritten under a lock, so
    shards running at once in one folder do not lose each other's entries.
    """

    def __init__(self, folder: Path, plan_: Plan, log=print, unsound: str = "it will be trained again"):
        self.folder, self.plan, self.log, self.unsound = folder, plan_, log, unsound
        self.plan_manifest = plan_.manifest()
        self.sound: set[int] | None = None  # found by done()

    def path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:05d}.nc"

    @property
    def manifest_path(self) -> Path:
        return self.folder / "manifest.json"

    def open(self) -> Store:
        """Create the folder and manifest, or check that an existing one belongs to this plan."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.manifest_path, "x") as f:  # exclusive: concurrent shards agree on one manifest
                f.write(json.dumps({**self.plan_manifest, "checksums": {}}, sort_keys=True))
        except FileExistsError:
            self.check()
        return self

    def check(self) -> None:
        """An error unless the folder's manifest is this plan's."""
        found = _read_manifest(self.folder)
        plan_part = {k: v for k, v in found.items() if k != "checksums"} if isinstance(found, dict) else found
        if plan_part == self.plan_manifest:
            return
        if found is None:
            raise InputError(
                f"{self.manifest_path} is missing or damaged, so its chunks cannot be checked; "
                f"remove {self.folder} to start over"
            )
        if found.get("config") == self.plan.config.to_dict():
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

    def checksums(self) -> dict[int, str]:
        found = _read_manifest(self.folder) or {}
        return {int(k): v for k, v in found.get("checksums", {}).items()}

    def problem(self, index: int, recorded: dict[int, str]) -> str | None:
        """Why chunk `index`'s file or record cannot be used, or None when it is sound or not begun."""
        path = self.path(index)
        if not path.exists():
            return "missing" if index in recorded else None
        if index not in recorded:
            return "not recorded in the manifest (interrupted while it was saved)"
        if storage.sha256(path) != recorded[index]:
            return "damaged (its checksum does not match the manifest's)"
        return None

    def done(self) -> set[int]:
        """The chunks whose files are sound: checked (and each unsound one named in one line) on the first
        call, then kept up to date by write()."""
        if self.sound is not None:
            return set(self.sound)
        recorded = self.checksums()
        self.sound = set()
        for index in range(self.plan.n_chunks):
            why = self.problem(index, recorded)
            if why is not None:
                self.log(f"chunk {index} ({self.path(index)}) is {why}; {self.unsound}")
            elif index in recorded:
                self.sound.add(index)
        return set(self.sound)

    def write(self, index: int, chunk: xr.Dataset) -> None:
        """Save a finished chunk, then record its checksum."""
        results.save(chunk, self.path(index))
        digest = storage.sha256(self.path(index))
        with storage.exclusive(self.folder / "manifest.lock", self.manifest_path, wait=True):
            manifest = _read_manifest(self.folder)
            manifest.setdefault("checksums", {})[str(index)] = digest
            storage.save_text(json.dumps(manifest, sort_keys=True), self.manifest_path)
        if self.sound is not None:
            self.sound.add(index)

    def read(self, index: int) -> xr.Dataset:
        """The Dataset of a chunk that done() found sound; any other is an InputError naming it."""
        if index not in self.done():
            raise InputError(f"chunk {index} ({self.path(index)}) is missing or damaged; run its shard again")
        chunk = xr.load_dataset(self.path(index))
        if chunk.attrs.get("kind") != CHUNK_KIND or json.loads(chunk.attrs.get("manifest", "null")) != (
            self.plan_manifest
        ):
            raise InputError(f"{self.path(index)} is not a chunk of this sweep; refusing to mix it in")
        return chunk


def run_chunks(plan_: Plan, store: Store, indices: Sequence[int], progress: bool | None = None) -> None:
    """Train the chunks among `indices` that are not yet in the store, saving each as it finishes."""
    done = store.done()
    todo = [i for i in indices if i not in done]
    steps = plan_.config.steps
    sizes = {i: len(plan_.cells_of(i)) for i in todo}
    with Progress(sum(sizes.values()) * steps, "sweep", "inst-step", show=progress) as bar:
        for index in todo:
            before = bar.done
            chunk = train_chunk(plan_, index, on_steps=lambda k, size=sizes[index]: bar.update(k * size))
            store.write(index, chunk)
            bar.update(before + sizes[index] * steps - bar.done)


def assemble(plan_: Plan, chunks: Sequence[xr.Dataset]) -> xr.Dataset:
    """The sweep's Dataset from its chunks (in index order): grid dims, metrics, config."""
    config = plan_.config
    flat = xr.concat(chunks, dim="cell", data_vars="all", coords="minimal", combine_attrs="drop")
    if config.series is not None:
        from sim import series_runs

        attrs = {"kind": results.RUN_KIND, "code_version": results.code_version()}
        return series_runs.dataset(config, plan_.device, flat, SAMPLED_N, attrs)
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


def existing_result(out: Path, config: TrainConfig, log=print) -> bool:
    """True when OUT already holds this config's finished sweep; an error when it holds another's.

    An unreadable OUT (a partial copy, a full disk) is moved aside to OUT.damaged, named in one line,
    and made again.
    """
    if not out.exists():
        return False
    try:
        ds = results.load(out)
    except results.DamagedFile as err:
        aside = out.with_name(out.name + ".damaged")
        out.replace(aside)
        log(f"{err}; moved it to {aside} and making it again")
        return False
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
    shard, whose chunks a later merge() joins. Two sweeps of one OUT (or of
    one shard) at once: the second stops with an InputError.
    """
    out = Path(out)
    if shard is not None:
        i, n = shard
        if not (isinstance(i, int) and isinstance(n, int) and n >= 1 and 0 <= i < n):
            raise InputError(f"shard {i}/{n} is not allowed; use i/N with 0 <= i < N")
    lock = chunk_folder(out) / ("sweep.lock" if shard is None else f"shard-{shard[0]}-of-{shard[1]}.lock")
    with storage.exclusive(lock, out if shard is None else f"shard {shard[0]}/{shard[1]} of {out}"):
        if existing_result(out, config, log):
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
        store = Store(chunk_folder(out), plan_, log).open()
        indices = range(plan_.n_chunks) if shard is None else range(shard[0], plan_.n_chunks, shard[1])
        done = store.done()
        log(
            f"{plan_.n_cells} models in {plan_.n_chunks} chunks of <= {plan_.chunk} on {plan_.device}; "
            f"{len(done)} chunks already done" + (f"; shard {shard[0]}/{shard[1]}" if shard else "")
        )
        run_chunks(plan_, store, indices, progress)
        if shard is not None:
            log(f"shard {shard[0]}/{shard[1]} done; join the shards with `tms-dropout sim merge`")
            return None
        return _merge(config, out, (), log)


def merge(
    config: TrainConfig,
    out: str | Path,
    *,
    folders: Sequence[str | Path] = (),
    log=print,
) -> Path:
    """Join a sweep's chunks (from OUT.chunks/ and any other folders) into OUT, checking every chunk."""
    out = Path(out)
    with storage.exclusive(chunk_folder(out) / "sweep.lock", out):
        return _merge(config, out, folders, log)


def _merge(config: TrainConfig, out: Path, folders: Sequence[str | Path], log) -> Path:
    if existing_result(out, config, log):
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
        store = Store(folder, plan_, log, unsound="not used")
        store.check()
        for index in sorted(store.done()):
            found.setdefault(index, store)
    missing = sorted(set(range(plan_.n_chunks)) - set(found))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise InputError(
            f"{len(missing)} of {plan_.n_chunks} chunks are missing or damaged ({shown}); "
            "run their shards (or the sweep) again"
        )
    ds = assemble(plan_, [found[i].read(i) for i in range(plan_.n_chunks)])
    results.save(ds, out)
    shutil.rmtree(chunk_folder(out), ignore_errors=True)
    log(f"wrote {out}")
    return out
