"""Composite candidates for any n features in m neurons, from blocks: 20 in 5.

A composite geometry puts each block on its own features and its own neurons.
Then the loss is a sum over blocks, exactly: a feature's output y_i sees only
its block's features and the dropout masks of its block's neurons, which are
independent of everything else, so the expectation over the rest integrates
out. An ignored feature costs I_i Var(x_i) = I_i (s/3 - s^2/4) (bias at its
mean s/2, s the density). And the loss is linear in the importances, so a
block on features f..f+k-1 costs I_f times the same block with the
importances I_{f+i} / I_f on features 0..k-1 (its optimum unchanged): where
importance is c * decay**i, that profile is decay**i wherever the block sits,
and one fit per block shape gives every composite of every size; for any
other profile (non-increasing) each shape is fitted at every place an
arrangement puts it (block_profiles), several times the work.

- shapes: dedicated (1 feature, 1 neuron); pair (2 on 1: antipodal or
  same-sign); turned pair (2 on 2: a two-vertex polygon, own norms and
  biases, at a free angle in the plane of two neurons: under dropout an
  antipodal pair across both neurons costs 1 / (2 - p) of the pair on one,
  to first order in density); k-gon for k = 3..max_polygon in a plane of 2 neurons (regular
  in every vertex order, free norms and biases per vertex, or free angles
  too); tetrahedron (4 on 3 neurons, regular or free norms and biases per
  vertex, turned by three angles); the 4- and 5-simplex (5 on 4 and 6 on 5
  neurons, regular or free norms and biases, turned by every plane rotation
  of their neurons: under dropout the trained 20-in-5 models spread 5-7
  features over the 5 neurons in nearly this shape); the 5-orthoplex (10 on
  5: five antipodal pairs on an orthonormal frame turned off the neurons,
  each vertex its own norm and bias; the search's optimum under dropout at
  importance 0.9**i and intermediate density; under dropout only, as
  without it the turn does not matter and it is five pairs); the
  5-demicube (16 on 5 neurons, regular, turned by every plane rotation: the optimum of a
  search over all of W and b at low density and uniform importance) and
  the simplex prism (20 on 5: a rectified 4-simplex and a tilted prism over
  its dual, two norms and two biases; the search's optimum at uniform
  importance, density <= 0.07), all three fitted on the sampled loss and
  scored by Monte Carlo (theory.sampled_fit), the orthoplex at density <= 0.3,
  the demicube at density <= 0.2, the prism at density <= 0.1 only, and screened: where the search's loss for
  one ends more than SCREEN above the best composite of the other blocks, it
  is not fitted there nor at the denser cells of that row; each fitted
  (theory.fits.fit_geometries) on features 0..k-1 (importance decay**i, or
  each profile block_profiles gives), the best kind per cell kept;
- structures: every multiset of shapes on at most m neurons and n features;
- arrangements: each structure's blocks in every order, on consecutive
  features from the most important, the rest ignored; blocks of one neuron
  next to each other (dedicated features and pairs: a run) take the run's
  features in any matching, not only consecutive ones (Run: each pair's
  loss at the importances of its two features, the least matching per
  cell; trained models nest pairs, the most important feature of a run
  with its least important one, where that is lower).

A Composite candidate is one structure; its loss is its best arrangement's. One with a
block scored by Monte Carlo is not a candidate (NaN) at a cell where it is not below every
composite with an exact loss by more than RESOLVE standard errors (resolved): a sampled
score within noise of an exact one does not take the cell.
Restrictions, stated in the phase diagram's attrs (ASSUMPTIONS):
the blocks of more than 2 neurons are simplices (tetrahedron, 4- and
5-simplex), the 5-demicube or the simplex prism, no feature spans two blocks, blocks take runs of consecutive
features in importance order (one-neuron blocks: any matching of the features of their run), and the ignored
features are the least important.
Importance must not increase with the feature's index (c * decay**i, decay in (0, 1], is fitted fastest).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

import numpy as np

from theory import exact_fit
from theory.blocks import (
    antipodal,
    dedicated,
    demicube,
    free_polygon,
    free_simplex,
    free_tetrahedron,
    irregular_polygon,
    orthoplex,
    parallel,
    polygon,
    simplex,
    simplex_prism,
    tetrahedron,
)
from theory.errors import InputError
from theory.fits import Fits, fit_geometries, fitted_on, grouped, rank
from theory.geometries import Geometry
from theory.metrics import POLYGON_NAMES
from theory.progress import Progress
from theory.setup import Setup

ASSUMPTIONS = (
    "blocks on disjoint features and neurons (the loss is then a sum over blocks, exactly): dedicated, "
    "pair on one neuron, turned pair on two, k-gon in a plane of two neurons, tetrahedron in three, "
    "4- and 5-simplex in four and five, 5-orthoplex (10 features, under dropout), 5-demicube (16) or "
    "simplex prism (20) in five, their loss by Monte Carlo (a cell's optimum only where below every "
    "exactly scored composite by two standard errors); each "
    "block on consecutive features in importance order, except that dedicated features and pairs next to "
    "each other take their features in any matching; the least important features ignored"
)


#: The simplices past the tetrahedron that composites use: k + 1 features spread over k neurons.
SIMPLEX_DIMENSIONS = (4, 5)
#: The demicube that composites use: 16 features over 5 neurons.
DEMICUBE = "5-demicube"
#: The simplex prism: 20 features over 5 neurons (theory.blocks.SimplexPrism).
PRISM = "simplex prism"
#: The orthoplex: 10 features over 5 neurons, five antipodal pairs on a turned frame
#: (theory.blocks.Orthoplex).
ORTHOPLEX = "5-orthoplex"
#: A sampled-loss fit stops (theory.sampled_fit's screening) where its composite's loss at the end of the
#: search is more than this fraction above the best composite of blocks fitted on the exact loss. On the
#: 20-in-5 study grid, fitted everywhere, the demicube's and the prism's excess over that best grows with
#: density along every row but one (within 2% of the best there); every cell this skips was 10.4% above.
SCREEN = 0.1
#: A composite scored by Monte Carlo (a block fitted on the sampled loss) takes a cell only where it is below
#: every composite with an exact loss by more than this many of its standard errors (resolved).
RESOLVE = 2.0


@dataclass(frozen=True)
class Shape:
    """A block shape: `features` features on `neurons` neurons, fitted as the best of its kinds."""

    name: str
    features: int
    neurons: int

    def geometries(self) -> tuple[Geometry, ...]:
        """The kinds this shape is fitted as, on features 0.. and neurons 0.."""
        k, G = self.features, Geometry
        if (k, self.neurons) == (1, 1):
            return (G("dedicated", 1, 1, (dedicated(0, 0),)),)
        if (k, self.neurons) == (2, 1):
            return (G("antipodal", 2, 1, (antipodal(0, 1, 0),)), G("same-sign", 2, 1, (parallel(0, 1, 0),)))
        if (k, self.neurons) == (2, 2):
            return (G("turned pair", 2, 2, (free_polygon(range(2)),)),)
        if (k, self.neurons) == (4, 3):
            return (
                G("tetrahedron", 4, 3, (tetrahedron(range(4)),)),
                G("tetrahedron, free vertices", 4, 3, (free_tetrahedron(range(4)),)),
            )
        if (k, self.neurons) == (20, 5):
            return (G(self.name, k, self.neurons, (simplex_prism(range(k), range(self.neurons)),)),)
        if k == 2 * self.neurons and self.neurons >= 5:
            return (G(self.name, k, self.neurons, (orthoplex(range(k), range(self.neurons)),)),)
        if k == 2 ** (self.neurons - 1) and self.neurons >= 5:
            return (G(self.name, k, self.neurons, (demicube(range(k), range(self.neurons)),)),)
        if k == self.neurons + 1 >= 5:
            neurons = range(self.neurons)
            return (
                G(self.name, k, self.neurons, (simplex(range(k), neurons),)),
                G(f"{self.name}, free vertices", k, self.neurons, (free_simplex(range(k), neurons),)),
            )
        name = POLYGON_NAMES[k]
        return (
            G(name, k, 2, (polygon(range(k)),)),
            G(f"{name}, free vertices", k, 2, (free_polygon(range(k)),)),
            G(f"{name}, free angles", k, 2, (irregular_polygon(range(k)),)),
        )


#: The blocks of one neuron: runs of them take their features in any matching (Run).
DEDICATED = Shape("dedicated", 1, 1)
PAIR = Shape("pair", 2, 1)


@dataclass(frozen=True)
class Run:
    """Blocks of one neuron next to each other in an arrangement: `singles` dedicated features and `pairs`
    pairs on singles + 2 pairs consecutive features, each block on a neuron of its own. The loss is a sum
    over the blocks whichever features each takes, so the run is scored as its least matching (matchings),
    cell by cell: a pair may take the run's most important feature and its least important."""

    singles: int
    pairs: int

    @property
    def features(self) -> int:
        return self.singles + 2 * self.pairs

    @property
    def neurons(self) -> int:
        return self.singles + self.pairs

    def matchings(self) -> tuple[tuple[tuple[int, ...], ...], ...]:
        """Every way to split features 0..features-1 into the run's blocks: the singles (ascending), then
        the pairs (each ascending, by first feature); consecutive blocks first (ties go to them)."""
        return _matchings(self.singles, self.pairs)

    def places(self, first: int):
        """(shape, features) of every block a matching of the run on features first.. can hold."""
        features = range(first, first + self.features)
        if self.singles:
            yield from ((DEDICATED, (f,)) for f in features)
        if self.pairs:
            yield from ((PAIR, pair) for pair in itertools.combinations(features, 2))


@cache
def _matchings(singles: int, pairs: int) -> tuple[tuple[tuple[int, ...], ...], ...]:
    def paired(rest: tuple[int, ...]):
        if not rest:
            yield ()
            return
        for j in range(1, len(rest)):
            for more in paired(rest[1:j] + rest[j + 1 :]):
                yield ((rest[0], rest[j]),) + more

    out = []
    for alone in itertools.combinations(range(singles + 2 * pairs), singles):
        rest = tuple(f for f in range(singles + 2 * pairs) if f not in alone)
        out += [tuple((f,) for f in alone) + matching for matching in paired(rest)]
    return tuple(out)


def shapes(max_polygon: int) -> tuple[Shape, ...]:
    if not 2 <= max_polygon <= max(POLYGON_NAMES):
        raise InputError(f"max_polygon = {max_polygon} is not allowed; it must be 2 (no polygons) to 6")
    polygons = tuple(Shape(POLYGON_NAMES[k], k, 2) for k in range(3, max_polygon + 1))
    simplices = tuple(Shape(f"{k}-simplex", k + 1, k) for k in SIMPLEX_DIMENSIONS)
    return (
        (DEDICATED, PAIR, Shape("turned pair", 2, 2))
        + polygons
        + (Shape("tetrahedron", 4, 3),)
        + simplices
        + (Shape(ORTHOPLEX, 10, 5), Shape(DEMICUBE, 16, 5), Shape(PRISM, 20, 5))
    )


@dataclass(frozen=True)
class Composite:
    """A candidate made of blocks: a multiset of shapes (largest first) on n_features in n_hidden."""

    shapes: tuple[Shape, ...]
    n_features: int
    n_hidden: int

    @property
    def name(self) -> str:
        """'pentagon + 2 pairs' (largest shapes first); 'ignore all' for none."""
        if not self.shapes:
            return "ignore all"
        parts = []
        for shape in dict.fromkeys(self.shapes):
            count = self.shapes.count(shape)
            plural = "" if shape.name == "dedicated" else "es" if shape.name.endswith("x") else "s"
            parts.append(shape.name if count == 1 else f"{count} {shape.name}{plural}")
        return " + ".join(parts)

    @property
    def represented(self) -> int:
        return sum(s.features for s in self.shapes)

    @property
    def complexity(self) -> int:
        """Ties go to the fewest features represented, then the fewest polygons (at p = 0 a square is two
        antipodal pairs)."""
        return sum(10 * s.features + (s.neurons == 2) for s in self.shapes)

    def arrangements(self) -> list[tuple[Shape | Run, ...]]:
        """The blocks in every order on consecutive features from the first, adjacent blocks of one neuron
        merged into a Run (which tries every matching of its features)."""
        merged = set()
        for order in itertools.permutations(self.shapes):
            parts: list[Shape | Run] = []
            for one_neuron, group in itertools.groupby(order, key=lambda s: s.neurons == 1):
                group = list(group)
                if one_neuron:
                    singles = sum(s.features == 1 for s in group)
                    parts.append(Run(singles, len(group) - singles))
                else:
                    parts.extend(group)
            merged.add(tuple(parts))
        return sorted(merged, key=lambda a: [_part_key(part) for part in a])


def _order_key(shape: Shape) -> tuple[int, int]:
    return (shape.features, shape.neurons)


def _part_key(part: Shape | Run) -> tuple[int, int, int]:
    return (part.features, part.neurons, isinstance(part, Shape))


def composites(n_features: int, n_hidden: int, max_polygon: int = 5) -> tuple[Composite, ...]:
    """Every multiset of shapes on at most n_hidden neurons and n_features features; 'ignore all' first."""
    options = shapes(max_polygon)
    out = [()]
    for size in range(1, n_hidden + 1):
        for combo in itertools.combinations_with_replacement(range(len(options)), size):
            if (
                sum(options[s].neurons for s in combo) <= n_hidden
                and sum(options[s].features for s in combo) <= n_features
            ):
                out.append(combo)
    ordered = [sorted(combo, key=lambda s: (-options[s].features, s)) for combo in out]
    return tuple(Composite(tuple(options[s] for s in combo), n_features, n_hidden) for combo in ordered)


@dataclass
class BlockFit:
    """One shape's best kind per cell (P, A, D) on features 0..k-1: loss, W, b, kind, vertex order. A: the
    importance profiles it was fitted at (block_profiles)."""

    loss: np.ndarray  # (P, A, D)
    W: np.ndarray  # (P, A, D, neurons, features)
    b: np.ndarray  # (P, A, D, features)
    kind: np.ndarray  # (P, A, D) of str
    order: np.ndarray  # (P, A, D, features): vertex order, -1 for non-polygons
    #: the loss's standard error (0: exact) and rigorous bounds (the loss itself where exact; NaN where a
    #: Monte Carlo score has none), (P, A, D)
    stderr: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    #: where a sampled-loss fit was screened (theory.sampled_fit): its sampled loss there; NaN elsewhere
    screened_at: np.ndarray


def fit_shape(shape: Shape, profiles, density, ps, progress=None, ceiling=None) -> BlockFit:
    """The shape's kinds fitted over (p, importance profile, density) on features 0..k-1; the best kept.

    profiles (A, k): the importances of its features, one row per profile. Every profile is fitted in
    the same batches (a cell's fit does not depend on the others'). ceiling (p, profile, density): the
    loss above which a sampled-loss fit is screened (theory.sampled_fit)."""
    geometries = shape.geometries()
    k = shape.features
    profiles = np.asarray(profiles, dtype=float).reshape(-1, k)
    setups = np.empty((len(ps), len(profiles), len(density)), dtype=object)
    for q, a, i in np.ndindex(*setups.shape):
        setups[q, a, i] = Setup(k, shape.neurons, sparsity=1 - density[i], importance=profiles[a], p=ps[q])
    fits = fit_geometries(geometries, setups, progress, ceiling)
    best = rank(fits.loss, [len(g.parameters()) for g in geometries]).phase
    cells = best.size

    def chosen(values):
        return np.take_along_axis(values, best[..., None], -1)[..., 0]

    loss = chosen(fits.loss)
    if "sampled_stderr" in fits.extra:  # NaN for the kinds fitted on the exact loss
        stderr, lower, upper, screened_at = (
            chosen(fits.extra[f"sampled_{key}"][1]) for key in ("stderr", "lower", "upper", "screened_at")
        )
        exact = np.isnan(stderr) & np.isfinite(loss)
        stderr = np.where(exact, 0.0, stderr)
        lower, upper = np.where(exact, loss, lower), np.where(exact, loss, upper)
    else:
        stderr, lower, upper, screened_at = np.zeros_like(loss), loss, loss, np.full_like(loss, np.nan)
    W = np.empty((cells, shape.neurons, k))
    b = np.empty((cells, k))
    for j in range(len(geometries)):
        mine = np.flatnonzero(best.ravel() == j)
        if mine.size:
            W[mine], b[mine] = fits.solution(j, mine)
    return BlockFit(
        loss,
        W.reshape(best.shape + (shape.neurons, k)),
        b.reshape(best.shape + (k,)),
        np.array([g.name for g in geometries])[best],
        np.take_along_axis(fits.vertex_order, best[..., None, None], -2)[..., 0, :],
        stderr,
        lower,
        upper,
        screened_at,
    )


def ignore_loss(density: np.ndarray) -> np.ndarray:
    """Var(x) of a feature of this density: the loss of ignoring it (bias at its mean), importance 1."""
    return density / 3 - density**2 / 4


def geometric_decay(importance) -> float | None:
    """decay when importance is c * decay**i (c > 0, decay in (0, 1]); None for any other profile that
    does not increase with the feature's index; else an InputError (composites put blocks on runs of
    features from the first, the most important, and ignore the last)."""
    importance = np.asarray(importance, dtype=float)
    if importance[0] <= 0 or (np.diff(importance) > 0).any():
        raise InputError(
            "composite candidates need importances that do not increase with the feature's index, the "
            f"first positive (order the features by importance); got {[float(v) for v in importance]}"
        )
    decay = importance[1] / importance[0] if len(importance) > 1 else 1.0
    if decay > 0 and np.allclose(importance, importance[0] * decay ** np.arange(len(importance)), rtol=1e-12):
        return float(decay)
    return None


Slots = dict[Shape, dict[tuple[int, tuple[int, ...]], int]]


def block_profiles(candidates, importances) -> tuple[dict[Shape, np.ndarray], Slots]:
    """Where each shape is fitted: profiles[s] (R, k), the importances of its k features relative to its
    first, one row per profile needed, and slot[s][a, features], the row for importance vector a with the
    block on those features (ascending; every place an arrangement can put it, and features 0..k-1).
    Importance c * decay**i has one profile per spacing of the features, decay**(features - first), the
    same wherever the block sits (one for a block on consecutive features, one per distance for a pair of
    a Run); any other has one per place (the shape fitted again at each)."""
    places: dict[Shape, set[tuple[int, ...]]] = {}
    for candidate in candidates:
        for order in candidate.arrangements():
            first = 0
            for part in order:
                held = (
                    part.places(first)
                    if isinstance(part, Run)
                    else [(part, tuple(range(first, first + part.features)))]
                )
                for shape, features in held:
                    places.setdefault(shape, {tuple(range(shape.features))}).add(features)
                first += part.features
    importances = [np.asarray(importance, dtype=float) for importance in importances]
    decays = [geometric_decay(importance) for importance in importances]
    profiles, slot = {}, {}
    for shape, held in places.items():
        rows: dict[tuple, int] = {}
        slot[shape] = {}
        for a, (importance, decay) in enumerate(zip(importances, decays, strict=True)):
            for features in sorted(held):
                at = np.array(features)
                if decay is not None:
                    row = decay ** (at - at[0])
                elif importance[at[0]] > 0:
                    row = importance[at] / importance[at[0]]
                else:  # a block on features of importance 0 costs 0 whatever it is fitted at
                    row = np.ones(len(at))
                slot[shape][a, features] = rows.setdefault(tuple(row), len(rows))
        profiles[shape] = np.array(list(rows), dtype=float).reshape(-1, shape.features)
    return profiles, slot


def fit(candidates: list[Composite], setups: np.ndarray, progress=None, screen: float = SCREEN) -> Fits:
    """Every composite's least loss (best arrangement) at every cell of setups (P, ..., D). screen: a
    sampled-loss fit stops where its composite ends more than this fraction above the best composite of
    the blocks fitted on the exact loss (theory.sampled_fit; np.inf: never)."""
    if not screen >= 0:  # NaN too
        raise InputError(f"screen = {screen!r} is not allowed; it must be >= 0 (np.inf: never screen)")
    if grouped(setups):
        raise InputError(
            "composite candidates add up blocks on disjoint neurons, each dropped on its own; with "
            "dropout_groups the loss does not split into blocks: search all of W and b instead "
            "(theory.direct_diagram, `tms-dropout theory direct-diagram`)"
        )
    P, D = setups.shape[0], setups.shape[-1]
    grid = setups.reshape(P, -1, D)
    A = grid.shape[1]
    n, m = candidates[0].n_features, candidates[0].n_hidden
    options = sorted({s for c in candidates for s in c.shapes}, key=_order_key)
    density = np.array([1.0 - setup.sparsity[0] for setup in grid[0, 0]])
    ps = np.array([setup.p for setup in grid[:, 0, 0]])
    # a sampled-loss fit costs a hundred exact ones or more: it reports on a bar of its own, after the rest
    sampled = [s for s in options if any(fitted_on(g) == "sampled loss" for g in s.geometries())]
    exact = [s for s in options if s not in sampled]
    importances = [np.asarray(grid[0, a, 0].importance) for a in range(A)]
    profiles, slot = block_profiles(candidates, importances)
    rows = sum(len(profiles[s]) * (exact_fit.passes(D) if fitted_on(g) == "exact loss" else D)
               for s in exact for g in s.geometries())  # fmt: skip
    with Progress.of(progress, P * rows, "block fits", "cell") as bar:
        fitted = {s: fit_shape(s, profiles[s], density, ps, bar) for s in exact}
    ignored = [_ignored_tail(importance, density) for importance in importances]
    without = [c for c in candidates if all(s in fitted for s in c.shapes)]
    best_exact = np.nanmin(_best_arrangements(without, fitted, slot, importances, ignored, (P, D))[0], -1)
    show = Progress.switch(progress)
    for s in sampled:
        ceiling = np.full((P, len(profiles[s]), D), np.inf)
        if s.neurons == m:  # its only composites: the block on features 0..k-1, the rest ignored
            for a, importance in enumerate(importances):
                ceiling[:, slot[s][a, _on_first(s)]] = (
                    (1 + screen) * best_exact[:, a] - ignored[a][s.features]
                ) / importance[0]
        fitted[s] = fit_shape(s, profiles[s], density, ps, show, ceiling)
    loss, arrangement, stderr = _best_arrangements(candidates, fitted, slot, importances, ignored, (P, D))
    loss[np.isinf(loss)] = np.nan  # a block not fitted: a sampled kind above its densest cell, or screened
    loss = resolved(loss, stderr, best_exact)

    def assemble(j: int, flat_cells: np.ndarray):
        out = []
        for cell in flat_cells:
            k, a, i = np.unravel_index(cell, (P, A, D))
            out.append(_assemble(arrangement[k, a, i, j], fitted, slot, (k, a, i), (m, n), density[i]))
        return out

    def solution(j, flat_cells):
        parts = assemble(j, flat_cells)
        return np.array([W for W, _, _ in parts]).reshape(-1, m, n), np.array(
            [b for _, b, _ in parts]
        ).reshape(-1, n)

    def describe(j, flat_cells):
        return [text for _, _, text in assemble(j, flat_cells)]

    lead = setups.shape[1:-1]

    def first(s: Shape, values: np.ndarray) -> np.ndarray:  # (P, A, D): the shape on features 0..k-1
        return values[:, [slot[s][a, _on_first(s)] for a in range(A)]]

    block_loss = np.stack([first(s, fitted[s].loss) for s in options])
    block_kind = np.stack([first(s, fitted[s].kind) for s in options])
    shaped = (len(options), P, *lead, D)
    return Fits(
        loss=loss.reshape(setups.shape + (len(candidates),)),
        theta=np.full(setups.shape + (len(candidates), 0), np.nan),
        vertex_order=np.full(setups.shape + (len(candidates), n), -1),
        solution=solution,
        extra={
            "block_loss": (
                ("shape",),
                block_loss.reshape(shaped),
                {"description": "each shape's best loss on features 0..k-1 (importance decay**i)"},
            ),
            "block_kind": (("shape",), block_kind.reshape(shaped).astype(str), {}),
            **{
                f"block_loss_{key}": (
                    ("shape",),
                    np.stack([first(s, getattr(fitted[s], key)) for s in options]).reshape(shaped),
                    {"description": text},
                )
                for key, text in (
                    ("stderr", "block_loss's standard error where it is a Monte Carlo score (0: exact)"),
                    ("lower", "a rigorous lower bound of block_loss (itself where exact; NaN: none)"),
                    ("upper", "a rigorous upper bound of block_loss (itself where exact; NaN: none)"),
                )
            },
            "block_loss_screened_at": (
                ("shape",),
                np.stack([first(s, fitted[s].screened_at) for s in options]).reshape(shaped),
                {
                    "description": "where a sampled-loss fit was screened (its composite more than "
                    "`screen` above the best composite of the blocks fitted on the exact loss; it and the "
                    "denser cells of its row not fitted, NaN in block_loss): its sampled loss at the end of "
                    "the search",
                    "screen": float(screen),
                },
            ),
        },
        describe=describe,
        coords={"shape": [s.name for s in options]},
    )


def resolved(loss: np.ndarray, stderr: np.ndarray, best_exact: np.ndarray) -> np.ndarray:
    """loss (..., C) with NaN where a composite scored by Monte Carlo (stderr > 0) is not below best_exact
    (...), the least loss of the composites whose loss is exact, by more than RESOLVE of its standard
    errors: within sampling error of an exact optimum it cannot take the cell (as the search over all of
    W and b cannot: theory.diagram)."""
    with np.errstate(invalid="ignore"):
        unresolved = (stderr > 0) & ~(loss + RESOLVE * stderr < best_exact[..., None])
    return np.where(unresolved, np.nan, loss)


def _ignored_tail(importance: np.ndarray, density: np.ndarray) -> np.ndarray:
    """(n + 1, 1, D): the loss of ignoring features f..n-1 (bias at the mean), for f = 0..n."""
    ignored = importance[:, None, None] * ignore_loss(density)[None, None, :]  # (n, 1, D)
    return np.concatenate([np.cumsum(ignored[::-1], 0)[::-1], np.zeros_like(ignored[:1])])


def _on_first(shape: Shape) -> tuple[int, ...]:
    return tuple(range(shape.features))


def _best_arrangements(candidates, fitted: dict[Shape, BlockFit], slot: Slots, importances, tails, cells):
    """Each candidate's least loss over its arrangements, (P, A, D, C) (inf where a block is not
    fitted), that arrangement at each cell as its blocks' (shape, features), and its loss's standard
    error (0 where every block's loss is exact; the blocks' Monte Carlo scores are independent); slot:
    block_profiles', tails: _ignored_tail per importance, cells: (P, D). A Run's blocks are its least
    matching at each cell."""
    P, D = cells
    A = len(importances)
    loss = np.full((P, A, D, len(candidates)), np.inf)
    stderr = np.zeros((P, A, D, len(candidates)))
    arrangement = np.empty((P, A, D, len(candidates)), dtype=object)

    @cache
    def block(a: int, s: Shape, features: tuple[int, ...]):
        """The block's loss and variance where it sits, (P, D)."""
        row = slot[s][a, features]
        scale = importances[a][features[0]]
        return scale * fitted[s].loss[:, row], (scale * fitted[s].stderr[:, row]) ** 2

    @cache
    def run(a: int, part: Run, first: int):
        """The least matching's loss and variance (P, D), which matching that is, and the matchings."""
        matchings = [[(DEDICATED if len(b) == 1 else PAIR, tuple(first + f for f in b)) for b in m]
                     for m in part.matchings()]  # fmt: skip
        totals = np.array([sum(block(a, *b)[0] for b in m) for m in matchings])  # (M, P, D)
        variances = np.array([sum(block(a, *b)[1] for b in m) for m in matchings])
        with np.errstate(invalid="ignore"):  # rounding decides no tie: the first matching takes it
            choice = np.argmax(totals <= totals.min(0) * (1 + 1e-12), 0)
        pick = np.take_along_axis
        return pick(totals, choice[None], 0)[0], pick(variances, choice[None], 0)[0], choice, matchings

    for a in range(A):
        for c, candidate in enumerate(candidates):
            for order in candidate.arrangements():
                total, variance, first, placed = np.zeros((P, D)), np.zeros((P, D)), 0, []
                for part in order:
                    if isinstance(part, Run):
                        part_loss, part_variance, choice, matchings = run(a, part, first)
                        placed.append((choice, matchings))
                    else:
                        held = (part, tuple(range(first, first + part.features)))
                        part_loss, part_variance = block(a, *held)
                        placed.append((None, [[held]]))
                    total, variance = total + part_loss, variance + part_variance
                    first += part.features
                total = total + tails[a][first]
                better = total < loss[:, a, :, c]
                loss[:, a, :, c] = np.where(better, total, loss[:, a, :, c])
                stderr[:, a, :, c] = np.where(better, np.sqrt(variance), stderr[:, a, :, c])
                for k, i in zip(*np.nonzero(better), strict=True):
                    arrangement[k, a, i, c] = tuple(
                        b
                        for choice, options in placed
                        for b in options[0 if choice is None else choice[k, i]]
                    )
    return loss, arrangement, stderr


def _assemble(
    arrangement, fitted: dict[Shape, BlockFit], slot: Slots, cell, shape: tuple[int, int], density: float
):
    """The composite's W (m, n), b (n) and description at one cell (p, importance, density index): each
    block (shape, features) of the arrangement on its features and the next neurons, the rest ignored
    (bias at the mean)."""
    n_hidden, n_features = shape
    W = np.zeros(shape)
    b = np.full(n_features, density / 2)
    neuron, parts = 0, []
    q, a, i = cell
    for s, features in arrangement:
        block, at = fitted[s], list(features)
        index = (q, slot[s][a, features], i)
        W[neuron : neuron + s.neurons, at] = block.W[index]
        b[at] = block.b[index]
        order = [features[v] for v in block.order[index] if v >= 0]
        parts.append(f"{block.kind[index]} {' '.join(map(str, order if order else features))}")
        neuron += s.neurons
    first = sum(s.features for s, _ in arrangement)  # the blocks hold features 0..first-1
    if first < n_features:
        parts.append(f"ignore {first}" + (f"-{n_features - 1}" if first < n_features - 1 else ""))
    return W, b, ", ".join(parts)
