"""TMS metrics of a weight matrix W (..., m, n); numpy in, numpy out.

Columns W[:, i] are the features' directions. A feature of zero norm has
zero superposition and zero dimensionality.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from theory.blocks import demicube_vertices, prism_vertices


def feature_norms(W) -> np.ndarray:
    """||W_i||, shape (..., n)."""
    return np.linalg.norm(np.asarray(W, dtype=np.float64), axis=-2)


def gram(W) -> np.ndarray:
    """W^T W, shape (..., n, n)."""
    W = np.asarray(W, dtype=np.float64)
    return np.swapaxes(W, -1, -2) @ W


def _projections_squared(W) -> np.ndarray:
    """(W_i_hat . W_j)^2, shape (..., n, n), row i; rows of zero-norm features are 0."""
    G = gram(W)
    norms = feature_norms(W)
    safe = np.where(norms > 0, norms, 1.0)
    return np.where(norms[..., :, None] > 0, (G / safe[..., :, None]) ** 2, 0.0)


def superposition(W) -> np.ndarray:
    """sum_{j != i} (W_i_hat . W_j)^2, shape (..., n)."""
    P = _projections_squared(W)
    return P.sum(-1) - np.diagonal(P, axis1=-2, axis2=-1)


def dimensions_per_feature(W) -> np.ndarray:
    """D* = m / ||W||_F^2, shape (...); inf when W = 0."""
    W = np.asarray(W, dtype=np.float64)
    frob = (W**2).sum((-2, -1))
    with np.errstate(divide="ignore"):
        return W.shape[-2] / frob


def feature_dimensionality(W) -> np.ndarray:
    """D_i = ||W_i||^2 / sum_j (W_i_hat . W_j)^2 (j over all features), shape (..., n)."""
    norms_sq = feature_norms(W) ** 2
    denom = _projections_squared(W).sum(-1)
    return np.where(denom > 0, norms_sq / np.where(denom > 0, denom, 1.0), 0.0)


def neuron_alignment(W) -> np.ndarray:
    """max_k |W_ki| / ||W_i||, shape (..., n): 1 for a feature on one neuron, 1/sqrt(m) at most spread.

    NaN for a feature of zero norm (it has no direction).
    """
    W = np.asarray(W, dtype=np.float64)
    norms = feature_norms(W)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, np.abs(W).max(-2) / norms, np.nan)


def neurons_per_feature(W) -> np.ndarray:
    """Participation ratio of each column's squared entries, (sum_k W_ki^2)^2 / sum_k W_ki^4, shape
    (..., n): 1 for a feature on one neuron, m when spread evenly over all; NaN at zero norm."""
    squared = np.asarray(W, dtype=np.float64) ** 2
    fourth = (squared**2).sum(-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(fourth > 0, squared.sum(-2) ** 2 / fourth, np.nan)


def excess_kurtosis(values, axis=-1) -> np.ndarray:
    """E[(v - mean)^4] / var^2 - 3 along `axis` (0 for a Gaussian; large for sparse, heavy-tailed v)."""
    v = np.asarray(values, dtype=np.float64)
    centred = v - v.mean(axis, keepdims=True)
    var = (centred**2).mean(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (centred**4).mean(axis) / var**2 - 3.0


def hidden_kurtosis(W, x, directions: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Excess kurtosis of the hidden activations h = W x, along the neurons and along random directions.

    W: (..., m, n); x: (samples, n), inputs without dropout (the trained model in use).
    Returns (mean over neurons, mean over `directions` random unit directions),
    each of shape (...). In a privileged basis the neurons' kurtosis exceeds
    that of random directions; with a rotation-invariant model they are equal
    in distribution.
    """
    W = np.asarray(W, dtype=np.float64)
    h = np.einsum("...mn,sn->...ms", W, np.asarray(x, dtype=np.float64))
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((directions, W.shape[-2]))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    along = np.einsum("dm,...ms->...ds", u, h)
    return np.nanmean(excess_kurtosis(h), -1), np.nanmean(excess_kurtosis(along), -1)


def group_norms_squared(W, groups) -> np.ndarray:
    """Each feature's squared norm inside each dropout group, sum_{k in g} W_ki^2: shape (..., G, n) for
    groups (m,) labelled 0..G-1 (theory.Setup.unit_groups)."""
    W = np.asarray(W, dtype=np.float64)
    groups = np.asarray(groups)
    return np.stack([(W[..., groups == g, :] ** 2).sum(-2) for g in range(int(groups.max()) + 1)], -2)


def groups_per_feature(W, groups) -> np.ndarray:
    """How many dropout groups carry each feature: the participation ratio of its squared norm across
    groups, (sum_g q_g)^2 / sum_g q_g^2 with q_g = group_norms_squared, shape (..., n). 1 for a feature
    inside one group, G when spread evenly over all (a feature written into several groups is
    redundant: it survives while any of them is kept); NaN at zero norm."""
    q = group_norms_squared(W, groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return q.sum(-2) ** 2 / (q**2).sum(-2)


def group_dimensions_per_feature(W, groups) -> np.ndarray:
    """Each group's D* = (its units) / ||W_g||_F^2, shape (..., G): below 1, the group packs more than one
    feature per unit (superposition inside the component); inf for a group that carries nothing."""
    groups = np.asarray(groups)
    q = group_norms_squared(W, groups).sum(-1)
    sizes = np.bincount(groups, minlength=q.shape[-1])
    with np.errstate(divide="ignore"):
        return sizes / q


def group_variables(W, groups) -> dict[str, tuple[tuple[str, ...], np.ndarray, dict]]:
    """The dropout-group metrics of W (..., m, n) as Dataset variables: name -> (the dims after W's
    leading ones, values, attrs). One set for every layer that stores models (theory's diagrams, sim's
    sweeps)."""
    return {
        "groups_per_feature": (
            ("feature",),
            groups_per_feature(W, groups),
            {
                "description": "participation ratio of the feature's squared norm over the dropout groups: "
                "1 inside one group, G spread evenly over all (redundant across components)"
            },
        ),  # fmt: skip
        "group_norm2": (
            ("group", "feature"),
            group_norms_squared(W, groups),
            {"description": "the feature's squared norm inside each dropout group"},
        ),
        "group_dimensions_per_feature": (
            ("group",),
            group_dimensions_per_feature(W, groups),
            {"description": "units of the group / ||W_g||_F^2: below 1, superposition inside the group"},
        ),
    }


def represented(W, tolerance: float = 0.0) -> np.ndarray:
    """How many features have a column of W (..., m, n) longer than tolerance: shape (...)."""
    return (feature_norms(W) > tolerance).sum(-1)


def max_angle_to_neuron(W, tolerance: float = 1e-6) -> np.ndarray:
    """Largest angle (degrees) from a represented column of W (..., m, n) to its nearest neuron axis.

    A column is represented when its norm exceeds tolerance; NaN when none is.
    """
    W = np.asarray(W, dtype=np.float64)
    norms = np.linalg.norm(W, axis=-2)
    cosine = np.abs(W).max(-2) / np.where(norms > tolerance, norms, 1.0)
    angles = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
    angles = np.where(norms > tolerance, angles, -np.inf)
    out = angles.max(-1)
    return np.where(np.isfinite(out), out, np.nan)


def superposition_onset(density, superposed) -> np.ndarray:
    """The largest density (last axis of superposed (..., D): more features represented than there
    are neurons) at which there is superposition; NaN where there is none."""
    values = np.where(superposed, np.asarray(density, dtype=float), -np.inf).max(-1)
    return np.where(np.isfinite(values), values, np.nan)


@dataclass(frozen=True)
class HiddenOffset:
    """What the features a model W (m, n) does not represent add to its hidden layer at their mean inputs.

    unrepresented: (n,) bool, the columns of norm <= `represented`; norms: (n,) every column's norm;
    tail_cosine: the mean pairwise cosine of the unrepresented nonzero columns (1: all point one way;
    NaN with fewer than two); offset: (m,) c = sum_j w_j density_j / 2 over them; centred: (n,) for each
    represented feature i, the fraction of its mean input density_i / 2 that c removes along its
    column, a_i / (density_i / 2) with a_i = -w_i . c / |w_i|^2 (NaN for the unrepresented). Under
    dropout output i receives w_i . D c / (1 - p), of mean w_i . c, beside the signal
    w_i . D w_i x_i / (1 - p) of mean |w_i|^2 x_i: on average the hidden layer carries x_i - a_i along
    w_i, and the mask multiplies that, not x_i.
    """

    unrepresented: np.ndarray
    norms: np.ndarray
    tail_cosine: float
    offset: np.ndarray
    centred: np.ndarray

    @property
    def offset_norm(self) -> float:
        return float(np.linalg.norm(self.offset))


def mean_offset(W, density, features) -> np.ndarray:
    """sum_j w_j density_j / 2 over the features selected by `features` (an (n,) bool mask): the hidden
    offset their inputs add at their mean, (m,)."""
    W = np.asarray(W, dtype=np.float64)
    density = np.broadcast_to(np.asarray(density, dtype=np.float64), W.shape[-1:])
    return W[:, features] @ (density[features] / 2)


def hidden_offset(W, density, represented: float = 0.5) -> HiddenOffset:
    """The hidden offset of one model W (m, n) with feature densities `density` (n,) or one value
    (HiddenOffset); a feature is represented when its column is longer than `represented`."""
    W = np.asarray(W, dtype=np.float64)
    n = W.shape[1]
    density = np.broadcast_to(np.asarray(density, dtype=np.float64), (n,))
    norms = feature_norms(W)
    rest = norms <= represented
    nonzero = rest & (norms > 0)
    unit = W[:, nonzero] / norms[nonzero]
    r = int(nonzero.sum())
    cosine = float(((unit.T @ unit).sum() - r) / (r * (r - 1))) if r > 1 else np.nan
    offset = mean_offset(W, density, rest)
    centred = np.full(n, np.nan)
    kept = ~rest
    with np.errstate(divide="ignore", invalid="ignore"):
        centred[kept] = -(offset @ W[:, kept]) / norms[kept] ** 2 / (density[kept] / 2)
    return HiddenOffset(rest, norms, cosine, offset, centred)


#: Names of the k-gons, k = 3..6.
POLYGON_NAMES = {3: "triangle", 4: "square", 5: "pentagon", 6: "hexagon"}


def polygon_name(k: int) -> str:
    return POLYGON_NAMES.get(k, f"{k}-gon")


@dataclass(frozen=True)
class Factor:
    """Features whose columns overlap, orthogonal (|cos| <= overlap) to every other factor's: one
    factor of the tegum product a configuration is.

    features: their indices; kind: what their Gram matrix is (see tegum_factors); dims: the dimension
    of their span; neurons: how many neurons that span is spread over (d^2 / sum_h P_hh^2 for P the
    projector onto it: dims when it lies on dims neurons, m when spread evenly over all m).
    """

    features: tuple[int, ...]
    kind: str
    dims: int
    neurons: float

    def __str__(self) -> str:
        where = f"{self.dims} dim{'s' if self.dims > 1 else ''} over {self.neurons:.1f} neurons"
        return f"{self.kind} {' '.join(map(str, self.features))} ({where})"


def tegum_factors(W, represented: float = 0.5, overlap: float = 0.1, tolerance: float = 0.1) -> list[Factor]:
    """The factors of one model W (m, n): its represented features (norm above `represented`), grouped
    into the connected components of |cos| > overlap, each named from its unit columns' Gram matrix:

    - 1 feature: "single";
    - 2 with cos < -1 + tolerance: "antipodal pair";
    - k spanning k - 1 dims with every cos within tolerance of -1/(k-1): "triangle" (k = 3),
      "tetrahedron" (k = 4), else "(k-1)-simplex";
    - k spanning 2 dims: the k-gon's name ("square", "pentagon", ...), regular or not;
    - k = 2^(d-1) spanning d >= 5 dims, each feature's sorted cosines within tolerance of a vertex's of
      the d-demicube (for d = 5: five at -3/5, ten at 1/5): "d-demicube";
    - 20 spanning 5 dims, ten features' sorted cosines within tolerance of a rectified 4-simplex
      vertex's and ten of a prism vertex's in theory.blocks.prism_vertices at one tilt (searched in
      steps of half a degree): "simplex prism";
    - otherwise "k features".

    A span's dimension counts the unit columns' singular values above tolerance. Factors come in order
    of their first feature."""
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"tegum_factors takes one model W (m, n), got shape {W.shape}")
    norms = feature_norms(W)
    shown = np.flatnonzero(norms > represented)
    unit = W[:, shown] / norms[shown]
    cos = unit.T @ unit
    linked = np.abs(cos) > overlap
    factors, seen = [], np.zeros(len(shown), dtype=bool)
    for start in range(len(shown)):
        if seen[start]:
            continue
        members, frontier = [start], [start]
        seen[start] = True
        while frontier:
            i = frontier.pop()
            for j in np.flatnonzero(linked[i] & ~seen):
                seen[j] = True
                members.append(int(j))
                frontier.append(int(j))
        members.sort()
        block = unit[:, members]
        left, values, _ = np.linalg.svd(block, full_matrices=False)
        dims = int((values > tolerance * max(values.max(), 1e-300)).sum())
        projector = left[:, :dims] @ left[:, :dims].T
        neurons = dims**2 / float((np.diagonal(projector) ** 2).sum())
        factors.append(
            Factor(
                tuple(int(shown[i]) for i in members),
                _kind(cos[np.ix_(members, members)], dims, tolerance),
                dims,
                neurons,
            )
        )
    return factors


def _kind(cos: np.ndarray, dims: int, tolerance: float) -> str:
    k = len(cos)
    off = cos[~np.eye(k, dtype=bool)]
    if k == 1:
        return "single"
    if k == 2 and off.max() < -1 + tolerance:
        return "antipodal pair"
    if dims == k - 1 and np.abs(off + 1 / (k - 1)).max() < tolerance:
        return {3: "triangle", 4: "tetrahedron"}.get(k, f"{k - 1}-simplex")
    if dims == 2 and k >= 3:
        return polygon_name(k)
    if dims >= 5 and k == 2 ** (dims - 1):
        vertex = np.sort((demicube_vertices(dims) @ demicube_vertices(dims)[0])[1:])
        rows = np.sort(cos[~np.eye(k, dtype=bool)].reshape(k, k - 1), axis=1)
        if np.abs(rows - vertex).max() < tolerance:
            return f"{dims}-demicube"
    if dims == 5 and k == 20 and _is_simplex_prism(cos, tolerance):
        return "simplex prism"
    return f"{k} features"


#: The tilts tegum_factors tries for the simplex prism (radians).
PRISM_TILTS = np.radians(np.arange(0.0, 90.25, 0.5))


@functools.cache
def _prism_cosines() -> np.ndarray:
    """At each of PRISM_TILTS, a rectified-simplex vertex's and a prism vertex's sorted cosines to the
    other 19 vertices: (tilts, 2, 19)."""
    out = []
    for tilt in PRISM_TILTS:
        gram = prism_vertices(tilt) @ prism_vertices(tilt).T
        out.append([np.sort(np.delete(gram[v], v)) for v in (0, 10)])
    return np.array(out)


def _is_simplex_prism(cos: np.ndarray, tolerance: float) -> bool:
    rows = np.sort(cos[~np.eye(20, dtype=bool)].reshape(20, 19), axis=1)
    # (tilts, 2, 20): each feature against a rectified-simplex vertex and a prism vertex at each tilt
    near = np.abs(rows[None, None] - _prism_cosines()[:, :, None]).max(axis=-1) < tolerance
    ten_each = (near.sum(axis=-1) >= 10).all(axis=1)
    return bool((ten_each & near.any(axis=1).all(axis=-1)).any())
