"""Block kinds: each kind's projection (what classification uses) inverts its parametrisation."""

import numpy as np
import pytest

from theory.blocks import (
    KINDS,
    Block,
    Demicube,
    Orthoplex,
    Simplex,
    SimplexPrism,
    demicube_vertices,
    orthoplex_vertices,
    prism_vertices,
    rectified_simplex_vertices,
)
from theory.errors import InputError
from theory.geometries import canonical_geometry


def _block(name: str, features: int) -> Block:
    shape = KINDS[name].shape
    kind = KINDS[name]
    neurons = (
        shape[1]
        if shape
        else 5
        if isinstance(kind, Demicube | SimplexPrism | Orthoplex)
        else features - 1
        if isinstance(kind, Simplex)
        else 2
    )
    return Block(name, tuple(range(shape[0] if shape else features)), tuple(range(neurons)))


def _sizes(kind) -> tuple:
    """Block sizes to test a kind at: polygons of 3 and 5 vertices, simplices in 4 and 5 dimensions, the
    5-orthoplex, the 5-demicube, the simplex prism."""
    if isinstance(kind, Orthoplex):
        return (10,)
    if isinstance(kind, Demicube):
        return (16,)
    if isinstance(kind, SimplexPrism):
        return (20,)
    return (3, 5) if kind.polygon else (5, 6) if isinstance(kind, Simplex) else (None,)


@pytest.mark.parametrize("name, features", [(name, k) for name in KINDS for k in _sizes(KINDS[name])])
def test_projection_inverts_the_parametrisation(name, features):
    geometry = canonical_geometry(_block(name, features))
    block = geometry.blocks[0]
    rng = np.random.default_rng(len(name) * 7 + (features or 0))
    theta = {}
    for symbol, role in zip(geometry.parameters(), geometry.roles(), strict=True):
        theta[symbol.name] = {
            "norm": rng.uniform(0.3, 1.5),
            "bias": rng.uniform(-0.3, 0.3),
            "angle": rng.uniform(-3.0, 3.0),
        }[role]
    W, b = geometry.matrices()
    values = {s: theta[s.name] for s in geometry.parameters()}
    W = np.array(W.subs(values).evalf(), dtype=float)
    b = np.array(b.subs(values).evalf(), dtype=float).ravel()
    found = block.type.project(block, W, b)
    assert set(found) == set(theta)
    if not block.type.unique_parameters:  # other parameters, the same W and b
        W_found, b_found = geometry.numeric_W_b([found[s.name] for s in geometry.parameters()])
        np.testing.assert_allclose(W_found, W, atol=1e-12)
        np.testing.assert_allclose(b_found, b, atol=1e-12)
        return
    for key, value in theta.items():
        assert found[key] == pytest.approx(value, abs=1e-12), key


def test_every_kind_knows_its_shape_role_and_next_constraint():
    assert [k for k in KINDS if KINDS[k].polygon] == ["polygon", "free polygon", "irregular polygon"]
    assert [k for k in KINDS if KINDS[k].exact and not KINDS[k].polygon] == [
        "tetrahedron",
        "free tetrahedron",
        "simplex",
        "free simplex",
    ]
    assert Block("free simplex", tuple(range(6)), tuple(range(5))).constrained().kind == "simplex"
    assert [k for k in KINDS if KINDS[k].sampled] == ["demicube", "orthoplex", "simplex prism"]
    assert [KINDS[k].densest for k in KINDS if KINDS[k].sampled] == [0.2, 0.3, 0.1]
    assert [k for k in KINDS if KINDS[k].dropout_only] == ["orthoplex"]
    with pytest.raises(InputError, match="2k features on k >= 5 neurons"):
        Block("orthoplex", tuple(range(8)), tuple(range(4)))
    with pytest.raises(InputError, match="2k features on k >= 5 neurons"):
        Block("orthoplex", tuple(range(12)), tuple(range(5)))
    with pytest.raises(InputError, match="2\\^\\(k-1\\) features on k >= 5 neurons"):
        Block("demicube", tuple(range(8)), tuple(range(4)))
    with pytest.raises(InputError, match="20 features on 5 neurons"):
        Block("simplex prism", tuple(range(16)), tuple(range(5)))
    with pytest.raises(InputError, match="k \\+ 1 features on k >= 4 neurons"):
        Block("simplex", (0, 1, 2, 3), (0, 1, 2))
    assert Block("free tetrahedron", (0, 1, 2, 3), (0, 1, 2)).constrained().kind == "tetrahedron"
    assert Block("irregular polygon", (0, 1, 2), (0, 1)).constrained().kind == "free polygon"
    assert Block("free polygon", (0, 1, 2), (0, 1)).constrained().constrained().kind == "polygon"
    assert (
        Block("antipodal", (0, 1), (0,)).type.feature_role(Block("antipodal", (0, 1), (0,)))
        == "antipodal pair"
    )
    assert Block("polygon", (0, 1, 2, 3), (0, 1)).type.feature_role(
        Block("polygon", (0, 1, 2, 3), (0, 1))
    ) == ("4-gon")
    assert not KINDS["ignore"].represents and KINDS["dedicated"].represents


def test_demicube_vertices_are_the_even_sign_vectors_with_cosines_minus_three_fifths_and_one_fifth():
    V = demicube_vertices(5)
    assert V.shape == (16, 5)
    signs = np.sign(V)
    np.testing.assert_array_equal(np.prod(signs, axis=1), np.ones(16))  # an even number of minus signs
    assert len({tuple(row) for row in signs}) == 16
    G = V @ V.T
    off = G[~np.eye(16, dtype=bool)]
    np.testing.assert_allclose(np.sort(np.unique(off.round(12))), [-0.6, 0.2])
    assert np.sum(np.isclose(G, -0.6), axis=1).tolist() == [5] * 16  # each vertex's 5 far neighbours
    np.testing.assert_allclose(V.T @ V, 16 / 5 * np.eye(5), atol=1e-12)  # a tight frame


def test_orthoplex_vertices_are_antipodal_pairs_on_the_axes():
    V = orthoplex_vertices(5)
    assert V.shape == (10, 5)
    np.testing.assert_array_equal(V[0::2], np.eye(5))  # features 2j, 2j + 1 on e_j and -e_j
    np.testing.assert_array_equal(V[1::2], -np.eye(5))
    G = V @ V.T
    np.testing.assert_array_equal(np.sort(np.unique(G[~np.eye(10, dtype=bool)])), [-1.0, 0.0])
    np.testing.assert_allclose(V.T @ V, 2 * np.eye(5))  # a tight frame


def test_the_simplex_prism_is_a_rectified_simplex_and_a_tilted_prism_over_its_dual():
    R = rectified_simplex_vertices(4)
    assert R.shape == (10, 4)
    G = R @ R.T
    np.testing.assert_allclose(np.sort(np.unique(G[~np.eye(10, dtype=bool)].round(12))), [-2 / 3, 1 / 6])
    assert np.sum(np.isclose(G, -2 / 3), axis=1).tolist() == [3] * 10  # the three disjoint edges
    tilt = 0.7
    V = prism_vertices(tilt)
    np.testing.assert_allclose(np.linalg.norm(V, axis=1), 1.0)
    np.testing.assert_allclose(V[:10, 4], 0.0)  # the rectified simplex lies in four dimensions
    np.testing.assert_allclose(V[10::2, 4], np.sin(tilt))  # the prism's two layers at +-sin(tilt)
    np.testing.assert_allclose(V[11::2, 4], -np.sin(tilt))
    G = V @ V.T
    # over one simplex vertex the prism's two vertices are at cos(2 tilt)
    np.testing.assert_allclose(np.diagonal(G[10::2, 11::2]), np.cos(2 * tilt))
    # each rectified vertex -(f_i + f_j) is against the prism over f_i, f_j (4 vertices) and away from
    # the other 6: the rectified simplex is the dual one
    cross = G[:10, 10:]
    np.testing.assert_allclose(np.sort(cross, axis=1)[:, :4], -np.sqrt(3 / 8) * np.cos(tilt))
    np.testing.assert_allclose(np.sort(cross, axis=1)[:, 4:], np.sqrt(1 / 6) * np.cos(tilt))
