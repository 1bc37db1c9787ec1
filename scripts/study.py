"""The dropout study's experiments, re-measured with sim's trainer (docs/model.md section 1).

    python scripts/study.py [--out runs/study] [--steps 10000] [--budgets 3000 30000]

Runs the sweeps of configs/study/*.toml (resumable: run the same command
again after an interruption), trains the "p = 0 stopped at the dropout
model's loss" models, and writes to OUT:

    1_five_in_two_embeddings.png      feature embeddings per sparsity, p x seed
    2_twenty_in_five_decay{d}.png     norms coloured by superposition, W^T W (seed 0)
    3_dimensions_per_feature.png      D* and each feature's D_i against 1/(1-S)
    4_loss.png                        per-feature loss against sparsity, per p
    5_same_loss.png                   p = 0 stopped at the p = 0.4 loss vs both
    6_privileged_basis.png            neuron alignment and hidden kurtosis against p
    report.md                         the numbers behind each claim, per seed
    runs/NAME.nc                      each config's sweep (runs/NAME_STEPS.nc: a --budgets re-run)
    same_loss.nc, kurtosis.nc         experiments 5 and 6's own numbers

Nothing is tuned: the settings are the notebook's (docs/model.md section 4).
--budgets re-runs experiment 1 at other step counts, to see which claims
depend on the training budget.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from sim import sweep, train  # noqa: E402
from sim.config import TrainConfig  # noqa: E402
from sim.plots import feature_embeddings, norms_and_gram  # noqa: E402
from sim.results import config_of, load  # noqa: E402
from theory import Setup, metrics  # noqa: E402
from theory.storage import save_dataset  # noqa: E402

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "study"
#: A feature counts as represented when ||W_i|| exceeds this.
REPRESENTED = 0.5
STICKY = {"1": 1, "3/4": 3 / 4, "2/3": 2 / 3, "1/2": 1 / 2, "2/5": 2 / 5, "3/8": 3 / 8}


def run(name: str, out: Path, steps: int | None = None, budget: bool = False) -> xr.Dataset:
    """The config's sweep (with --steps, at that step count) in OUT/runs/NAME.nc; a --budgets re-run
    (budget=True) in OUT/runs/NAME_STEPS.nc."""
    config = TrainConfig.from_toml(CONFIGS / f"{name}.toml")
    if steps is not None and steps != config.steps:
        config = TrainConfig.from_dict({**config.to_dict(), "steps": steps})
    path = out / "runs" / (f"{name}_{config.steps}.nc" if budget else f"{name}.nc")
    print(f"== {name}: {config.n_cells} models x {config.steps} steps -> {path}")
    sweep.sweep(config, path)
    return load(path)


def density(ds) -> np.ndarray:
    return 1 - ds.sparsity.values


def represented(ds) -> xr.DataArray:
    return (ds.feature_norm > REPRESENTED).sum("feature")


# -- figures -------------------------------------------------------------------------------------


def save(fig, path: Path) -> None:
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


def dimensions_figure(ds: xr.Dataset, title: str) -> plt.Figure:
    """TMS's figure: D* = m/||W||_F^2 (line: mean over seeds) and each feature's D_i (dots)."""
    ps = ds.p.values
    fig, axes = plt.subplots(1, len(ps), figsize=(4 * len(ps), 3.4), sharey=True, squeeze=False)
    x = 1 / density(ds)
    for ax, p in zip(axes[0], ps, strict=True):
        run = ds.sel(p=p)
        for seed in run.seed.values:
            d_i = run.feature_dimensionality.sel(seed=seed).values  # (sparsity, feature)
            ax.scatter(np.repeat(x, d_i.shape[1]), d_i.ravel(), s=4, alpha=0.35, color="tab:blue")
            ax.plot(x, run.dimensions_per_feature.sel(seed=seed), color="k", lw=0.6, alpha=0.4)
        ax.plot(x, run.dimensions_per_feature.mean("seed"), color="k", lw=2, label="D* (mean over seeds)")
        for label, value in STICKY.items():
            ax.axhline(value, color="0.7", lw=0.6, ls=":")
            ax.text(x.max(), value, f" {label}", va="center", fontsize=7, color="0.4")
        ax.set_xscale("log")
        ax.set_xlabel("1 / (1 - S)")
        ax.set_title(f"p = {p:g}", fontsize=9)
    axes[0, 0].set_ylabel("dimensions per feature (D*: line; D_i: dots)")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def loss_figure(panels: dict[str, xr.Dataset]) -> plt.Figure:
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for ax, (title, ds) in zip(axes[0], panels.items(), strict=True):
        n = ds.sizes["feature"]
        for p, color in zip(ds.p.values, plt.cm.viridis(np.linspace(0, 0.85, ds.sizes["p"])), strict=True):
            per_feature = ds.sampled_loss.sel(p=p) / n
            for seed in ds.seed.values:
                ax.scatter(density(ds), per_feature.sel(seed=seed), s=8, color=color, alpha=0.5)
            ax.plot(density(ds), per_feature.mean("seed"), color=color, label=f"p = {p:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("density 1 - S")
        ax.set_title(title, fontsize=9)
    axes[0, 0].set_ylabel("loss per feature, with dropout (L / n)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Final loss (200k fresh samples, dropout on): dots are seeds, lines their mean", fontsize=9)
    fig.tight_layout()
    return fig


# -- experiment 5: a p = 0 model stopped at the dropout model's loss ----------------------------


def same_loss(ds: xr.Dataset, p_dropout: float) -> xr.Dataset:
    """Train p = 0 models (one call per seed, the notebook's packing) and snapshot each at the
    first logged step whose batch loss reaches the p_dropout model's final loss (mean over seeds)."""
    config = config_of(ds)
    target = ds.sampled_loss.sel(p=p_dropout).mean("seed").values  # per sparsity, sum over features
    rows = []
    for seed in ds.seed.values:
        setups = [
            Setup(config.n_features, config.n_hidden, sparsity=s, importance=ds.importance.values, p=0.0)
            for s in ds.sparsity.values
        ]
        result = train(
            setups,
            steps=config.steps,
            seed=int(seed),
            log_every=10,
            snapshot_below=target,
            progress=False,
        )
        rows.append((result.snapshot_W, result.snapshot_step, result.loss_history[:, -1]))
    W = np.stack([r[0] for r in rows])
    return xr.Dataset(
        {
            "W": (("seed", "sparsity", "hidden", "feature"), W),
            "step": (("seed", "sparsity"), np.stack([r[1] for r in rows])),
            "superposition": (("seed", "sparsity", "feature"), metrics.superposition(W)),
            "feature_norm": (("seed", "sparsity", "feature"), metrics.feature_norms(W)),
            "target": (("sparsity",), target),
        },
        coords={"seed": ds.seed.values, "sparsity": ds.sparsity.values},
    )


def same_loss_figure(ds: xr.Dataset, stopped: xr.Dataset, p_dropout: float) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    x = density(ds)
    models = {
        "p = 0, full budget": ds.sel(p=0.0),
        "p = 0, stopped at the dropout model's loss": stopped,
        f"p = {p_dropout:g}": ds.sel(p=p_dropout),
    }
    for (label, run), color in zip(models.items(), ["tab:blue", "tab:orange", "tab:green"], strict=True):
        total = run.superposition.sum("feature")
        count = (run.feature_norm > REPRESENTED).sum("feature")
        for ax, value in zip(axes, (total, count), strict=True):
            for seed in run.seed.values:
                ax.scatter(x, value.sel(seed=seed), s=8, color=color, alpha=0.5)
            ax.plot(x, value.mean("seed"), color=color, label=label)
    axes[0].set_ylabel("total superposition")
    axes[0].set_title("sum over i of sum_{j != i} (W_i_hat . W_j)^2", fontsize=8)
    axes[1].set_ylabel(f"features with ||W_i|| > {REPRESENTED}")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("density 1 - S")
    axes[0].legend(fontsize=7)
    n, m = ds.sizes["feature"], ds.sizes["hidden"]
    fig.suptitle(f"{n} features in {m} dims: superposition at equal training loss (dots: seeds)", fontsize=9)
    fig.tight_layout()
    return fig


# -- experiment 6: the privileged basis ---------------------------------------------------------


def kurtosis(ds: xr.Dataset, samples: int = 20_000) -> tuple[xr.DataArray, xr.DataArray]:
    """Excess kurtosis of h = W x (no dropout) along neurons and along random directions."""
    rng = np.random.default_rng(0)
    n = ds.sizes["feature"]
    neurons = xr.zeros_like(ds.dimensions_per_feature)
    random_dirs = xr.zeros_like(ds.dimensions_per_feature)
    for s in ds.sparsity.values:
        x = (rng.random((samples, n)) >= s) * rng.random((samples, n))
        W = ds.W.sel(sparsity=s).values
        a, b = metrics.hidden_kurtosis(W, x)
        neurons.loc[{"sparsity": s}] = a
        random_dirs.loc[{"sparsity": s}] = b
    return neurons, random_dirs


def privileged_figure(ds: xr.Dataset, neurons, random_dirs) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    alignment = ds.neuron_alignment.where(ds.feature_norm > REPRESENTED).mean("feature")
    ratio = neurons / random_dirs
    m = ds.sizes["hidden"]
    for s, color in zip(ds.sparsity.values, ["tab:blue", "tab:orange", "tab:green"], strict=False):
        for ax, value in zip(axes, (alignment, ratio), strict=True):
            v = value.sel(sparsity=s)
            for seed in ds.seed.values:
                ax.scatter(ds.p.values, v.sel(seed=seed), s=8, color=color, alpha=0.5)
            ax.plot(ds.p.values, v.mean("seed"), color=color, label=f"1 - S = {1 - s:.2g}")
    axes[0].axhline(1 / np.sqrt(m), color="0.6", ls=":", lw=0.8)
    axes[0].set_ylabel("neuron alignment, max_k |W_ki| / ||W_i||")
    axes[0].set_title(f"mean over features with ||W_i|| > {REPRESENTED}; dotted: 1/sqrt({m})", fontsize=8)
    axes[1].axhline(1, color="0.6", ls=":", lw=0.8)
    axes[1].set_ylabel("excess kurtosis of h, neurons / random")
    axes[1].set_title("h = W x without dropout; 1: no preferred basis", fontsize=8)
    for ax in axes:
        ax.set_xlabel("dropout rate p")
    axes[0].legend(fontsize=7)
    n = ds.sizes["feature"]
    fig.suptitle(
        f"{n} features in {m} dims: the privileged basis against p (dots: seeds)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


# -- the report ----------------------------------------------------------------------------------


def fmt(values) -> str:
    return " ".join(f"{v:.3g}" for v in np.ravel(values))


def report(five: dict[int, xr.Dataset], twenty, stopped, basis, kurt, p_dropout) -> str:
    lines = ["# The dropout study, re-measured", ""]
    lines.append(f"A feature is represented when ||W_i|| > {REPRESENTED}. Per-seed values in seed order.")
    lines.append("")
    lines.append("## Claim 1: 5 in 2 at p = 0.4 never beyond antipodal pairs; features neuron-aligned")
    for steps, ds in five.items():
        lines.append(f"- budget {steps} steps:")
        for p in ds.p.values:
            counts = represented(ds.sel(p=p))
            most = counts.max("sparsity").values
            align = (
                ds.neuron_alignment.sel(p=p)
                .where(ds.feature_norm.sel(p=p) > REPRESENTED)
                .mean(("feature", "sparsity"))
            )
            lines.append(
                f"  - p = {p:g}: most features represented at any sparsity, per seed: {fmt(most)}; "
                f"mean neuron alignment {fmt(align.values)}"
            )
    ds = five[max(five)]
    lines.append(
        "  - represented features by density (1-S = "
        + fmt(density(ds))
        + "), mean over seeds: "
        + "; ".join(f"p = {p:g}: {fmt(represented(ds.sel(p=p)).mean('seed').values)}" for p in ds.p.values)
    )
    lines += [
        "",
        "## Claim 2: 20 in 5, dropout hinders superposition at high sparsity; weak less-important features",
    ]
    sparsest = twenty.sparsity.values.max()
    for decay in twenty.importance_decay.values:
        run = twenty.sel(importance_decay=decay)
        for p in run.p.values:
            at = run.sel(p=p, sparsity=sparsest)
            dense = run.sel(p=p, sparsity=run.sparsity.values.min())
            weak = ((dense.feature_norm > 0.1) & (dense.feature_norm < REPRESENTED)).sum("feature")
            lines.append(
                f"- decay {decay:g}, p = {p:g}: at 1-S = {1 - sparsest:.3g}: "
                f"represented {fmt(represented(at).values)}, "
                f"total superposition {fmt(at.superposition.sum('feature').values)}; dense (S = 0): "
                f"represented {fmt(represented(dense).values)}, "
                f"weak (0.1 < norm < {REPRESENTED}) {fmt(weak.values)}"
            )
    lines += ["", "## Claim 4: dimensions per feature D* go up with dropout (20 in 5, uniform importance)"]
    uniform = twenty.sel(importance_decay=1.0)
    for p in uniform.p.values:
        lines.append(
            f"- p = {p:g}: D* by density (mean over seeds): "
            f"{fmt(uniform.dimensions_per_feature.sel(p=p).mean('seed').values)}"
        )
    higher = (uniform.dimensions_per_feature.sel(p=0.4) >= uniform.dimensions_per_feature.sel(p=0.0)).mean()
    lines.append(f"- share of (seed, sparsity) cells with D*(p = 0.4) >= D*(p = 0): {float(higher):.2f}")
    lines += [
        "",
        "## Claim 5: loss worse with p = 0.4, p = 0.15 in between; equal-loss p = 0 has more superposition",
    ]
    for decay in twenty.importance_decay.values:
        loss = twenty.sampled_loss.sel(importance_decay=decay)
        ordered = ((loss.sel(p=0.0) < loss.sel(p=0.15)) & (loss.sel(p=0.15) < loss.sel(p=0.4))).mean()
        lines.append(
            f"- 20 in 5, decay {decay:g}: share of (seed, sparsity) cells with "
            f"L(0) < L(0.15) < L(0.4): {float(ordered):.2f}"
        )
    run = twenty.sel(importance_decay=0.7)
    reached = (stopped.step >= 0).mean()
    more = (stopped.superposition.sum("feature") > run.sel(p=p_dropout).superposition.sum("feature")).mean()
    count_stopped, count_dropout = represented(stopped), represented(run.sel(p=p_dropout))
    more_features = (count_stopped > count_dropout).mean()
    fewer_features = (count_stopped < count_dropout).mean()
    lines.append(
        f"- decay 0.7: p = 0 stopped at the p = {p_dropout:g} model's loss (per-feature targets "
        f"{fmt(stopped.target.values / run.sizes['feature'])}): reached in {float(reached):.2f} of runs, "
        f"at steps {fmt(stopped.step.median('seed').values)} (median over seeds); "
        f"more total superposition than p = {p_dropout:g} "
        f"in {float(more):.2f} of (seed, sparsity) cells, more represented features in "
        f"{float(more_features):.2f}, fewer in {float(fewer_features):.2f}"
    )
    lines += ["", "## Claim 6: dense important features share their representation with the bias"]
    for p in run.p.values:
        dense = run.sel(p=p, sparsity=run.sparsity.values.min())
        lines.append(
            f"- 20 in 5, decay 0.7, S = 0, p = {p:g}: b of features 0-4 (mean over seeds) "
            f"{fmt(dense.b.isel(feature=slice(0, 5)).mean('seed').values)}; "
            f"norms {fmt(dense.feature_norm.isel(feature=slice(0, 5)).mean('seed').values)}"
        )
    lines += ["", "## Experiment 6: privileged basis against p (20 in 5, decay 0.9)"]
    neurons, random_dirs = kurt
    alignment = basis.neuron_alignment.where(basis.feature_norm > REPRESENTED).mean("feature")
    for s in basis.sparsity.values:
        lines.append(
            f"- 1-S = {1 - s:.2g}: p = {fmt(basis.p.values)}; "
            f"alignment {fmt(alignment.sel(sparsity=s).mean('seed').values)}; "
            f"kurtosis neurons/random {fmt((neurons / random_dirs).sel(sparsity=s).mean('seed').values)}"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/study"))
    parser.add_argument("--steps", type=int, default=None, help="override every config's step count")
    parser.add_argument(
        "--budgets", type=int, nargs="*", default=[], help="experiment 1 at these step counts too"
    )
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    p_dropout = 0.4

    five = {}
    five_main = run("five_in_two", out, args.steps)
    five[config_of(five_main).steps] = five_main
    for steps in args.budgets:
        five[steps] = run("five_in_two", out, steps, budget=True)
    twenty = run("twenty_in_five", out, args.steps)
    basis = run("privileged_basis", out, args.steps)

    save(feature_embeddings(five_main, five_main.seed.values), out / "1_five_in_two_embeddings.png")
    for decay in twenty.importance_decay.values:
        fig = norms_and_gram(twenty.sel(importance_decay=decay), int(twenty.seed.values[0]))
        fig.suptitle(fig._suptitle.get_text() + f", importance {decay:g}**i", fontsize=9)
        save(fig, out / f"2_twenty_in_five_decay{decay:g}.png")
    save(
        dimensions_figure(twenty.sel(importance_decay=1.0), "20 features in 5 dims, uniform importance"),
        out / "3_dimensions_per_feature.png",
    )
    panels = {"5 in 2, 0.9**i": five_main}
    panels.update(
        {f"20 in 5, {d:g}**i": twenty.sel(importance_decay=d) for d in twenty.importance_decay.values}
    )
    save(loss_figure(panels), out / "4_loss.png")

    print("== experiment 5: p = 0 stopped at the dropout model's loss")
    stopped = same_loss(twenty.sel(importance_decay=0.7), p_dropout)
    dropout_model = twenty.sel(importance_decay=0.7, p=p_dropout)
    save_dataset(
        stopped.assign(dropout_superposition=dropout_model.superposition).assign_attrs(p_dropout=p_dropout),
        out / "same_loss.nc",
    )
    save(same_loss_figure(twenty.sel(importance_decay=0.7), stopped, p_dropout), out / "5_same_loss.png")

    kurt = kurtosis(basis)
    save_dataset(xr.Dataset({"kurtosis_neurons": kurt[0], "kurtosis_random": kurt[1]}), out / "kurtosis.nc")
    save(privileged_figure(basis, *kurt), out / "6_privileged_basis.png")

    text = report(five, twenty, stopped, basis, kurt, p_dropout)
    (out / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
