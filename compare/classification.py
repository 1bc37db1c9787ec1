"""Which catalogue geometry a trained (W, b) realises.

Each candidate geometry of theory's catalogue is fitted to the model by
projection, modulo the model's symmetries (a signed permutation of the
neurons leaves W^T diag(mask) W, hence the loss, unchanged; without dropout
every rotation of the hidden space does, and the fit aligns the model by
orthogonal Procrustes):

- dedicated / antipodal / same-sign blocks read their norms off the block's
  neuron (clipped at 0: a wrong sign is left in the residual);
- a k-gon's vertex order is read off the model (its columns counter-clockwise),
  so a pentagon in any of its 12 orders is a pentagon; its norm and angle are
  the least-squares fit of its vertices, the first Fourier coefficient of the
  columns taken as complex numbers; a free-vertex polygon's norms are each
  column's length along its vertex direction;
- free biases are read off; a polygon's shared bias is the mean of its
  features' biases; everything the geometry sets to zero is residual.

Two numbers per geometry: the residual, ||(W, b) - fit|| / max(||(W, b)||, 1), and
the loss excess, min(dL, dL - <grad L(W, b), fit - (W, b)>) / L(W, b) with
dL = L(fit) - L(W, b), exact (theory.expected_loss_and_grad): what the
projection costs, discounting the first-order part that a model away from a
stationary point owes to its slope; for a trained model the two agree.
A geometry fits when both are small (RESIDUAL_MAX, EXCESS_MAX): the fit is
close to the model, and what the projection threw away did not matter to the
loss. The label is the simplest fitting geometry, by features represented,
then parameters (the families are nested: an antipodal pair with one norm at
0 is a dedicated feature; a triangle of norm 0 ignores everything), or
"unclassified" when none fits.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from theory import InputError, Setup, expected_loss, expected_loss_and_grad
from theory.candidates import geometries as named_geometries
from theory.closed_fit import closed_form
from theory.geometries import (
    Geometry,
    counter_clockwise,
    polygon_blocks,
    polygon_vertices,
    with_vertex_orders,
)

UNCLASSIFIED = "unclassified"
#: A geometry fits when its relative residual is at most this ...
RESIDUAL_MAX = 0.15
#: ... and replacing the model by the fit raises the exact loss by at most this, relative.
EXCESS_MAX = 1e-3
#: A polygon with free angles fits every placement of its features in a plane, so it is a k-gon only
#: when every vertex is there (norm at least this times the block's largest) ...
IRREGULAR_NORM_MIN = 0.25
#: ... and no two vertices point the same way (at least this many degrees apart).
IRREGULAR_ANGLE_MIN = 15.0
#: A represented feature whose bias is above this shares its representation with the bias.
BIAS_SHARING_MIN = 0.01


@dataclass(frozen=True)
class FeatureRole:
    """One feature of a classified model."""

    feature: int
    role: str  # ignored, dedicated, antipodal pair, same-sign pair, k-gon, or unclassified
    neurons: tuple[int, ...]  # the trained model's neurons its block uses
    norm: float  # ||W[:, i]||
    angle_to_neuron: float  # degrees between W[:, i] and the nearest neuron axis (NaN if W[:, i] = 0)
    bias: float
    bias_sharing: bool  # represented and b_i > BIAS_SHARING_MIN: the bias carries part of x_i


@dataclass(frozen=True)
class Classification:
    """A model's geometry: the label (a catalogue name or 'unclassified'), confidence in [0, 1]."""

    label: str
    confidence: float
    features: tuple[FeatureRole, ...]
    loss: float  # exact loss of the model (sum over features)
    residual: dict[str, float]  # per catalogue geometry
    loss_excess: dict[str, float]  # per catalogue geometry
    params: dict[str, float]  # the label's fitted parameters (empty if unclassified)
    rotation: float  # degrees, the label's polygon angle from neuron k1 (NaN without a polygon)
    vertex_order: tuple[int, ...] = ()  # the label's polygon features counter-clockwise (empty: none)


def _signed_permutations(m: int):
    for perm in itertools.permutations(range(m)):
        for signs in itertools.product((1.0, -1.0), repeat=m):
            P = np.zeros((m, m))
            P[np.arange(m), perm] = signs
            yield P, perm


def _fit_block_params(geometry: Geometry, W: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """The geometry's parameters by projection of (W, b), W already in the geometry's neuron frame."""
    values: dict[str, float] = {}
    for block in geometry.blocks:
        values.update(block.type.project(block, W, b))
    return values


def _counter_clockwise(geometry: Geometry, W: np.ndarray) -> Geometry:
    """The geometry with each polygon's vertices in the order of W's columns counter-clockwise from
    the block's first feature (the vertex order is read off the model, not fixed by the catalogue)."""
    orders = [counter_clockwise(geometry.blocks[i], W) for i in polygon_blocks(geometry)]
    return with_vertex_orders(geometry, orders) if orders else geometry


#: Alternations of projection and orthogonal Procrustes when every rotation is a symmetry (p = 0).
PROCRUSTES_ROUNDS = 8


@dataclass(frozen=True)
class Projection:
    """A model's best projection onto one geometry."""

    residual: float  # relative to max(||(W, b)||, 1)
    W: np.ndarray  # the fitted W, in the model's frame
    b: np.ndarray
    params: dict[str, float]
    neuron_of: tuple[int, ...]  # the model neuron of each geometry neuron
    vertices: tuple[int, ...]  # the polygons' vertex order in the geometry's frame


def fit(geometry: Geometry, W: np.ndarray, b: np.ndarray, rotations: bool = False) -> Projection:
    """Best projection of (W, b) onto the geometry over the model's symmetries.

    The symmetries are the neuron signed permutations; with rotations=True (no dropout: the loss
    depends on W only through W^T W) every orthogonal map of the hidden space, found by
    alternating projection and orthogonal Procrustes from each signed permutation.
    """
    # Relative to the model's size, or to one unit-norm feature when smaller (a model that
    # ignores everything is all noise relative to itself).
    scale = max(np.sqrt(np.sum(W**2) + np.sum(b**2)), 1.0)
    best = None
    for P, _ in _signed_permutations(W.shape[0]):
        Q = P
        for _round in range(PROCRUSTES_ROUNDS if rotations else 1):
            framed = Q @ W  # the model in the geometry's neuron frame
            ordered = _counter_clockwise(geometry, framed)
            closed = closed_form(ordered)
            values = _fit_block_params(ordered, framed, b)
            W_fit, b_fit = closed.numeric_W_b([values[t.name] for t in closed.parameters()])
            residual = np.sqrt(np.sum((framed - W_fit) ** 2) + np.sum((b - b_fit) ** 2)) / scale
            if best is None or residual < best.residual:
                vertices = tuple(polygon_vertices(ordered, framed))
                neurons = tuple(int(k) for k in np.abs(Q).argmax(1))
                best = Projection(residual, Q.T @ W_fit, b_fit, values, neurons, vertices)
            if rotations:
                U, _, Vt = np.linalg.svd(W_fit @ W.T)  # the orthogonal Q minimising ||Q W - W_fit||
                Q, previous = U @ Vt, Q
                if np.allclose(Q, previous, atol=1e-10):
                    break
    return best


def _degenerate(geometry: Geometry, W: np.ndarray) -> bool:
    """Whether an irregular polygon block of the fit is no k-gon: a vertex missing or two coinciding."""
    for block in geometry.blocks:
        if not block.type.polygon or block.type.ordered:  # only free angles can degenerate
            continue
        columns = W[:, list(block.features)]
        norms = np.linalg.norm(columns, axis=0)
        if norms.min() < IRREGULAR_NORM_MIN * norms.max():
            return True
        unit = columns / norms
        cosines = np.clip(unit.T @ unit, -1.0, 1.0)[np.triu_indices(len(block.features), 1)]
        if np.degrees(np.arccos(cosines)).min() < IRREGULAR_ANGLE_MIN:
            return True
    return False


def _angle_to_neuron(column: np.ndarray) -> float:
    norm = np.linalg.norm(column)
    if norm == 0:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(np.abs(column).max() / norm, 0.0, 1.0))))


def classify(
    setup: Setup,
    W,
    b,
    geometries: tuple[Geometry, ...] | None = None,
    residual_max: float = RESIDUAL_MAX,
    excess_max: float = EXCESS_MAX,
) -> Classification:
    """The catalogue geometry the trained (W, b) realises, per feature and as a whole."""
    W, b = setup.check_parameters(W, b)
    if W.ndim != 2 or b.ndim != 1:
        raise InputError(f"classify takes one model: W (m, n) and b (n,); got {W.shape} and {b.shape}")
    if geometries is None:
        geometries = named_geometries(setup.n_features, setup.n_hidden)
    geometries = tuple(geometries)
    # Without dropout every rotation of the hidden space is a symmetry (with one neuron: only the sign), and
    # so it is when every unit is in one dropout group (the layer is kept or dropped as a whole). Otherwise
    # the fits allow signed permutations of the units only: with groups of several units (rotations within
    # a group are symmetries too) a model can be left unclassified that a rotation would have matched.
    rotations = (setup.p == 0 or setup.n_groups == 1) and setup.n_hidden > 1
    fits = [fit(g, W, b, rotations=rotations) for g in geometries]
    W_fit, b_fit = np.stack([f.W for f in fits]), np.stack([f.b for f in fits])
    at_model = expected_loss_and_grad(setup, W, b)
    loss = float(at_model.loss)
    # What the projection costs: the loss change, or its part beyond first order if smaller. At a
    # stationary point (a trained model) the two agree; away from one, the first-order part is owed
    # to the model's slope, not to the structure the projection removed.
    change = np.asarray(expected_loss(setup, W_fit, b_fit)) - loss
    linear = np.einsum("gij,ij->g", W_fit - W, at_model.grad_W)
    linear = linear + np.einsum("gi,i->g", b_fit - b, at_model.grad_b)
    excess = np.minimum(change, change - linear) / max(loss, 1e-12)
    residual = np.array([f.residual for f in fits])
    # How far past its thresholds each geometry is: <= 1 fits.
    badness = np.maximum(residual / residual_max, np.maximum(excess, 0.0) / excess_max)
    badness = np.where([_degenerate(g, W_fit[i]) for i, g in enumerate(geometries)], np.inf, badness)
    counts = np.array([len(g.parameters()) for g in geometries])
    represented = np.array([g.represented for g in geometries])
    fitting = np.flatnonzero(badness <= 1.0)
    columns = np.linalg.norm(W, axis=0)
    if fitting.size == 0:
        label, confidence, params, rotation, vertices = UNCLASSIFIED, 0.0, {}, float("nan"), ()
        roles = {f: (UNCLASSIFIED, ()) for f in range(setup.n_features)}
    else:
        chosen = min(fitting, key=lambda i: (represented[i], counts[i], badness[i]))
        simpler = [
            badness[i] - 1.0
            for i in range(len(geometries))
            if (represented[i], counts[i]) < (represented[chosen], counts[chosen])
        ]
        confidence = float(np.clip(min([1.0 - badness[chosen], *simpler]), 0.0, 1.0))
        g = geometries[chosen]
        label, params, neuron_of, vertices = (
            g.name,
            fits[chosen].params,
            fits[chosen].neuron_of,
            fits[chosen].vertices,
        )
        rotation = float("nan")
        roles = {}
        for block in g.blocks:
            neurons = tuple(neuron_of[k] for k in block.neurons)
            is_polygon = block.type.polygon
            role = block.type.feature_role(block)
            for f in block.features:
                roles[f] = (role, neurons)
            if is_polygon and np.isnan(rotation):
                # a regular or free polygon's phi; an irregular one's first vertex
                phi = params.get(f"phi_{block.label}", params.get(f"phi_{block.features[0]}"))
                rotation = float(np.degrees(phi))
    features = tuple(
        FeatureRole(
            feature=f,
            role=roles[f][0],
            neurons=roles[f][1],
            norm=float(columns[f]),
            angle_to_neuron=_angle_to_neuron(W[:, f]),
            bias=float(b[f]),
            bias_sharing=bool(roles[f][0] != "ignored" and columns[f] > 0 and b[f] > BIAS_SHARING_MIN),
        )
        for f in range(setup.n_features)
    )
    return Classification(
        label=label,
        confidence=confidence,
        features=features,
        loss=loss,
        residual={g.name: float(r) for g, r in zip(geometries, residual, strict=True)},
        loss_excess={g.name: float(e) for g, e in zip(geometries, excess, strict=True)},
        params={k: float(v) for k, v in params.items()},
        rotation=rotation,
        vertex_order=vertices,
    )
