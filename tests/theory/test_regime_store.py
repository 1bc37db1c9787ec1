"""The closed forms' regimes kept on disk: a later process reads them and gets the same numbers."""

import numpy as np
import pytest

from theory import geometries
from theory.blocks import antipodal, dedicated, polygon
from theory.candidates import geometry
from theory.geometries import ClosedForm, setup_args
from theory.setup import Setup


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TMS_DROPOUT_CACHE", str(tmp_path))
    return tmp_path


def _evaluate(closed: ClosedForm):
    """Value, gradient and Hessian at points spread over several regimes of an antipodal pair."""
    rng = np.random.default_rng(3)
    theta = np.column_stack(
        [
            rng.uniform(0.2, 1.2, 12),
            rng.uniform(-0.4, 0.3, 12),
            rng.uniform(0.2, 1.2, 12),
            rng.uniform(-0.4, 0.3, 12),
        ]
    )
    setups = [
        Setup(2, 1, sparsity=s, importance=[1.0, 0.6], p=p)
        for s, p in zip([0.9, 0.5, 0.0] * 4, [0.0, 0.2, 0.5] * 4, strict=True)
    ]
    columns = np.stack([setup_args(setup) for setup in setups])
    return closed.evaluate(theta, columns, order=2)


def test_a_later_process_reads_the_regimes_and_gets_the_same_numbers(cache, monkeypatch):
    first = _evaluate(ClosedForm(geometry("antipodal", 2, 1), cache={}))
    (folder,) = (cache / "closed_forms").iterdir()
    stored = sorted(path.name for path in folder.iterdir())
    assert sum(name.endswith(".regime") for name in stored) >= 2, stored  # the points span regimes
    assert all(
        any(name.endswith(f".{part}.py") for name in stored) for part in ("value", "gradient", "hessian")
    )

    def no_derivation(*args, **kwargs):
        raise AssertionError("a stored regime was derived again")

    monkeypatch.setattr(geometries, "derive_loss", no_derivation)
    second = _evaluate(ClosedForm(geometry("antipodal", 2, 1), cache={}))  # a new form: as in a new process
    for a, b in ((first.value, second.value), (first.grad, second.grad), (first.hess, second.hess)):
        np.testing.assert_array_equal(a, b)
    assert sorted(path.name for path in folder.iterdir()) == stored  # nothing new written


def test_damaged_stored_code_is_written_again(cache):
    first = _evaluate(ClosedForm(geometry("antipodal", 2, 1), cache={}))
    (folder,) = (cache / "closed_forms").iterdir()
    damaged = {}
    value, gradient, regime = (
        sorted(folder.glob(pattern))[0] for pattern in ("*.value.py", "*.gradient.py", "*.regime")
    )
    for path, change in ((value, "edit"), (gradient, "truncate"), (regime, "truncate")):
        good = damaged[path] = path.read_bytes()
        # code that still runs but gives other numbers, and half-written files
        path.write_bytes(
            good.replace(b"return", b"return 1 +", 1) if change == "edit" else good[: len(good) // 2]
        )
    second = _evaluate(ClosedForm(geometry("antipodal", 2, 1), cache={}))
    for a, b in ((first.value, second.value), (first.grad, second.grad), (first.hess, second.hess)):
        np.testing.assert_array_equal(a, b)
    for path, good in damaged.items():
        assert path.read_bytes() == good, path.name


def _points(count: int, params: int, rng) -> list[np.ndarray]:
    """Random points and points on the regimes' edges (zero biases, equal norms, zero angles)."""
    points = [rng.uniform(-0.6, 1.2, params) for _ in range(count)]
    for point in points[: count // 2]:
        point[rng.integers(params)] = 0.0
        point[rng.integers(params)] = point[rng.integers(params)]
    return points


@pytest.mark.parametrize("block", [dedicated(0, 0), antipodal(0, 1, 0), polygon((0, 1, 2))], ids=str)
def test_the_path_names_the_regime_derive_loss_gives(block):
    # Points with the same path must get the same regime from derive_loss, or the store would
    # hand a later process another regime than the one it would have derived.
    import sympy as sp

    from theory.geometries import RegimeForm, canonical_geometry
    from theory.symbolic import derive_loss, reference_values, regime_path

    form = RegimeForm(canonical_geometry(block))
    W, b, params = form._W, form._b, form.parameters()
    rng = np.random.default_rng(0)
    regimes = {}
    count = 8 if block.kind == "polygon" else 40
    for theta in _points(count, len(params), rng):
        p = float(rng.choice([0.0, 0.3]))
        point = dict(zip(params, theta, strict=True))
        path = regime_path(*reference_values(W, b, point, p), p)
        regime = derive_loss(W, b, params, point, p)
        described = sp.srepr((regime.conditions, regime.strict))
        assert regimes.setdefault(path, described) == described
    assert len(regimes) >= (2 if block.kind == "polygon" else 3)  # the points span regimes
