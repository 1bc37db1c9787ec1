"""The symbolic geometry catalogue against the exact loss and the published p = 0 forms."""

import numpy as np
import pytest
import sympy as sp
from hypothesis import strategies as st

from theory import InputError, Setup, expected_loss
from theory.blocks import antipodal, dedicated, ignore, polygon
from theory.candidates import geometries as named
from theory.candidates import geometry
from theory.fits import fitted_on
from theory.geometries import (
    ClosedForm,
    Geometry,
    cyclic_orders,
    vertex_variants,
    with_vertex_orders,
)
from theory.symbolic import density_symbols, derive_loss, importance_symbols, p_symbol
from theory.testing import check_geometry_loss, strategies

FAST = [g for shape in [(2, 1), (3, 2)] for g in named(*shape) if fitted_on(g) == "closed form"]
CLOSED = {g.name + str((g.n_features, g.n_hidden)): ClosedForm(g) for g in FAST}


@pytest.mark.parametrize("name", sorted(CLOSED))
def test_closed_form_matches_exact_loss(name):
    # parameters at the hard places (zero and tiny norms, biases at 0, angles on and between the neurons)
    closed = CLOSED[name]
    g = closed.geometry
    setups = strategies.setups(g.n_features, g.n_hidden, p=st.sampled_from([0.0, 0.15, 0.4, 0.7]))
    report = check_geometry_loss(
        lambda setup, **params: closed.loss(list(params.values()), setup),
        g,
        setups=setups,
        examples=8,
        rel=1e-11,
    )
    assert report.cases == 8


def test_closed_form_gradient_matches_finite_differences():
    closed = ClosedForm(geometry("antipodal", 2, 1))
    setup = Setup(2, 1, sparsity=0.8, importance=[1.0, 0.6], p=0.3)
    theta = np.array([0.8, 0.05, 0.7, 0.02])
    _, grad = closed.loss_and_grad(theta, setup)
    for k in range(4):
        step = np.zeros(4)
        step[k] = 1e-6
        numeric = (closed.loss(theta + step, setup) - closed.loss(theta - step, setup)) / 2e-6
        assert grad[k] == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_triangle_with_rotation_matches_exact_loss():
    closed = ClosedForm(geometry("triangle", 3, 2))
    setup = Setup(3, 2, sparsity=0.7, importance=[1.0, 0.9, 0.8], p=0.4)
    for theta in ([0.9, 0.05, 0.3], [1.1, -0.1, 1.0]):
        W, b = closed.numeric_W_b(theta)
        assert closed.loss(theta, setup) == pytest.approx(float(expected_loss(setup, W, b)), rel=1e-11)


def test_p0_limit_reproduces_the_published_closed_forms():
    # docs/model.md section 4, symbolically: densities s, importances (1, r), p = 0, fixed biases.
    s, r = sp.symbols("s r", positive=True)
    n = 2
    subs = {
        **dict.fromkeys(density_symbols(n), s),
        importance_symbols(n)[0]: 1,
        importance_symbols(n)[1]: r,
        p_symbol: 0,
    }
    cases = {
        "antipodal": ({"w_0": 1, "w_1": 1, "b_0": 0, "b_1": 0}, (1 + r) * s**2 / 6),
        "dedicated 0": ({"w_0": 1, "b_0": 0, "b_1": s / 2}, r * (s / 3 - s**2 / 4)),
        "dedicated 1": ({"w_1": 1, "b_1": 0, "b_0": s / 2}, s / 3 - s**2 / 4),
    }
    for name, (values, published) in cases.items():
        g = geometry(name, 2, 1)
        W, b = g.matrices()
        params = g.parameters()
        point = {t: float(sp.sympify(values[t.name]).subs(s, 0.3)) for t in params}
        regime = derive_loss(W, b, params, point, 0.0)
        expr = regime.expr.subs(subs).subs({t: values[t.name] for t in params})
        assert sp.simplify(expr - published) == 0, name


def test_bad_geometries_are_one_clear_error():
    with pytest.raises(InputError, match="unknown geometry 'hexagon' for \\(2, 1\\)"):
        geometry("hexagon", 2, 1)
    with pytest.raises(InputError, match="does not fit n_features = 3"):
        Geometry("bad", 3, 1, (antipodal(0, 1, 0),))
    with pytest.raises(InputError, match="does not fit n_hidden = 1"):
        Geometry("bad", 2, 1, (dedicated(0, 0), dedicated(1, 1)))
    with pytest.raises(InputError, match="a polygon block takes 2 to 6 features and 2 neurons"):
        polygon((0,), (0, 1))
    with pytest.raises(InputError, match="no named geometries for n_features = 4"):
        named(4, 3)
    closed = ClosedForm(Geometry("one", 2, 1, (ignore(0), ignore(1))))
    with pytest.raises(InputError, match="geometry 'one' is for \\(2, 1\\); the setup is \\(3, 1\\)"):
        closed.loss([0.0, 0.0], Setup(3, 1))


@pytest.mark.slow
@pytest.mark.parametrize("name", [g.name for g in named(5, 2)[:6]])
def test_five_in_two_composites_match_exact_loss(name):
    # Minutes per pentagon regime (sympy derivation and lambdify): hence slow.
    closed = ClosedForm(geometry(name, 5, 2))
    setup = Setup(5, 2, sparsity=0.8, importance=0.9 ** np.arange(5), p=0.4)
    theta = closed.geometry.start() + 0.05
    W, b = closed.numeric_W_b(theta)
    assert closed.loss(theta, setup) == pytest.approx(float(expected_loss(setup, W, b)), rel=1e-11)


@pytest.mark.parametrize("density, p", [(0.1, 0.4), (1.0, 0.4), (0.5, 0.15), (0.03, 0.8)])
def test_dedicated_feature_optimum_has_the_derived_closed_form(density, p):
    # One feature on one neuron, norm w and bias beta free, regime beta >= 0.
    # Setting the symbolic loss's gradient to zero gives
    #   w^2 = (1-p)(4-3d) / (4-3d(1-p)),  beta = 2dp / (4-3d(1-p)),
    #   L* = d p (4-3d) / (3 (4-3d(1-p))):  with dropout the bias carries part of the feature.
    from theory import minimize_loss

    g = Geometry("dedicated", 1, 1, (dedicated(0, 0),))
    W, b = g.matrices()
    w, beta = g.parameters()
    regime = derive_loss(W, b, (w, beta), {w: 0.9, beta: 0.05}, 0.4)
    d = density_symbols(1)[0]
    u = sp.Symbol("u", positive=True)  # w^2
    loss = sp.expand(regime.expr.subs({importance_symbols(1)[0]: 1, w: sp.sqrt(u)}))
    (solution,) = sp.solve([sp.diff(loss, u), sp.diff(loss, beta)], [u, beta], dict=True)
    denominator = 4 - 3 * d * (1 - p_symbol)
    assert sp.simplify(solution[u] - (1 - p_symbol) * (4 - 3 * d) / denominator) == 0
    assert sp.simplify(solution[beta] - 2 * d * p_symbol / denominator) == 0
    optimum = minimize_loss(Setup(1, 1, sparsity=1 - density, p=p), n_starts=8)
    values = {d: density, p_symbol: p}
    assert optimum.W[0, 0] ** 2 == pytest.approx(float(solution[u].subs(values)), rel=1e-6)
    assert optimum.b[0] == pytest.approx(float(solution[beta].subs(values)), rel=1e-6)
    assert optimum.loss == pytest.approx(float(loss.subs(solution).subs(values)), rel=1e-9)


def test_numeric_derivatives_of_a_regime_match_the_symbolic_ones():
    # Large regimes (a polygon's) get the complex-step gradient and a central-difference
    # Hessian; on a small regime both ways are available and must agree.
    closed = ClosedForm(geometry("antipodal", 2, 1), cache={})
    theta = np.array([0.9, 0.05, 0.7, 0.02])
    (part,) = closed._parts
    compiled = part.form.regime_at(theta, 0.4)
    rng = np.random.default_rng(0)
    columns = [theta[k] + 1e-3 * rng.normal(size=5) for k in range(4)]
    setup = [np.full(5, 0.3), np.full(5, 0.3), np.ones(5), np.full(5, 0.7), np.full(5, 0.4)]
    symbolic = [np.asarray(compiled.gradient(*columns, *setup)), compiled.hessian(*columns, *setup)]
    compiled._symbolic = False
    grad, hess = np.asarray(compiled.gradient(*columns, *setup)), compiled.hessian(*columns, *setup)
    np.testing.assert_allclose(grad, symbolic[0], rtol=1e-12, atol=1e-15)
    for j in range(4):
        for k in range(4):
            expected = np.broadcast_to(symbolic[1][j][k], (5,))
            np.testing.assert_allclose(hess[j][k], expected, rtol=1e-6, atol=1e-8)


def test_composite_gradient_and_hessian_are_the_exact_loss_derivatives():
    # A composite's loss is the sum of its blocks'; its gradient and Hessian, assembled
    # block by block, against central differences of the exact loss.
    g = geometry("antipodal 1 2, dedicated 0", 3, 2)
    closed = ClosedForm(g, cache={})
    setup = Setup(3, 2, sparsity=0.7, importance=[1.0, 0.8, 0.5], p=0.15)
    theta = np.array([0.9, 0.1, 0.8, 0.05, 0.6, -0.02])

    def exact(t):
        W, b = closed.numeric_W_b(t)
        return float(expected_loss(setup, W, b))

    from theory.geometries import setup_args

    result = closed.evaluate(theta[None], setup_args(setup)[None], order=2)
    assert result.value[0] == pytest.approx(exact(theta), rel=1e-11)
    step = 1e-5
    for k in range(len(theta)):
        e = np.eye(len(theta))[k] * step
        assert result.grad[0, k] == pytest.approx(
            (exact(theta + e) - exact(theta - e)) / (2 * step), abs=1e-8
        )
        grad_plus = closed.evaluate((theta + e)[None], setup_args(setup)[None], order=1).grad[0]
        grad_minus = closed.evaluate((theta - e)[None], setup_args(setup)[None], order=1).grad[0]
        np.testing.assert_allclose(result.hess[0, k], (grad_plus - grad_minus) / (2 * step), atol=1e-6)
    # Blocks on disjoint features and neurons: no cross terms in the Hessian.
    assert np.all(result.hess[0, :2, 2:] == 0)


def test_vertex_orders_up_to_rotation_and_reflection():
    """(k - 1)! / 2 orders of k vertices, distinct as cycles up to reflection; the block's own first."""
    for k, count in ((2, 1), (3, 1), (4, 3), (5, 12), (6, 60)):
        orders = cyclic_orders(range(k))
        assert len(orders) == count and orders[0] == tuple(range(k))
        classes = set()
        for order in orders:
            rotations = {order[i:] + order[:i] for i in range(k)}
            mirrored = {tuple(reversed(r)) for r in rotations}
            assert not classes & (rotations | mirrored)
            classes |= rotations | mirrored
    assert cyclic_orders((4, 1, 2, 3))[0] == (4, 1, 2, 3)
    pentagon = geometry("pentagon", 5, 2)
    variants = vertex_variants(pentagon)
    assert len(variants) == 12 and variants[0] == pentagon
    assert {v.name for v in variants} == {"pentagon"}
    # parameter names do not depend on the order, so thetas carry over between orders
    assert all(v.parameters() == pentagon.parameters() for v in variants)
    with pytest.raises(InputError, match="not an order"):
        with_vertex_orders(pentagon, [(0, 1, 2, 3, 3)])
    with pytest.raises(InputError, match="1 polygon block"):
        with_vertex_orders(pentagon, [])
