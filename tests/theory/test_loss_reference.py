"""The whole exact loss against an independent high-precision computation (mpmath)."""

import itertools

import mpmath
import numpy as np
from hypothesis import given, settings

from theory import Setup, expected_loss
from theory.testing.strategies import problems

from .test_cube import reference as cube_reference


def reference_loss(setup: Setup, W, b) -> mpmath.mpf:
    """L by direct enumeration in 80-digit arithmetic; E[u_i y_+] as a central difference of E[y_+^2]."""
    with mpmath.workdps(80):
        n, m, p = setup.n_features, setup.n_hidden, mpmath.mpf(setup.p)
        W = [[mpmath.mpf(float(v)) for v in row] for row in np.asarray(W)]
        b = [mpmath.mpf(float(v)) for v in np.asarray(b)]
        density = [1 - mpmath.mpf(s) for s in setup.sparsity]
        h = mpmath.mpf("1e-30")
        total = mpmath.mpf(0)
        for mask in itertools.product([0, 1], repeat=m):
            p_mask = mpmath.fprod((1 - p) if d else p for d in mask)
            if p_mask == 0:
                continue
            M = [
                [sum(W[k][i] * W[k][j] for k in range(m) if mask[k]) / (1 - p) for j in range(n)]
                for i in range(n)
            ]
            for active in itertools.product([0, 1], repeat=n):
                p_set = mpmath.fprod(density[j] if active[j] else 1 - density[j] for j in range(n))
                if p_set == 0:
                    continue
                A = [j for j in range(n) if active[j]]
                for i in range(n):
                    c = [M[i][j] for j in A]
                    term = cube_reference(b[i], c, 2)
                    if i in A:
                        pos = A.index(i)
                        up, down = list(c), list(c)
                        up[pos] += h
                        down[pos] -= h
                        cross = (cube_reference(b[i], up, 2) - cube_reference(b[i], down, 2)) / (4 * h)
                        term += mpmath.mpf(1) / 3 - 2 * cross
                    total += p_mask * p_set * mpmath.mpf(setup.importance[i]) * term
        return total


@settings(max_examples=25)
@given(problems((1, 3), (1, 3)))  # m > n included
def test_exact_loss_matches_high_precision_enumeration(problem):
    setup, W, b = problem
    exact = float(expected_loss(setup, W, b))
    reference = float(reference_loss(setup, W, b))
    assert abs(exact - reference) <= 1e-10 * abs(reference) + 1e-15
