"""Shared data of the core unit tests: the hand-worked weights example and a helper.

Hand example used throughout. Dependencies are chosen through their log1p (Eq. 4), so
``S = expm1(S~)``. Rows (T = 5, ``.`` = padding):

  row 0  S~ = [0.3, 0.5, 0.8, 1.3, .]      padding on the right
  row 1  S~ = [., 0.1, ., 0.6, 0.35]       padding on the left and in the middle
  row 2  S~ = [0.2, 0.2, 0.2, ., .]        constant S      -> fallback w~ = 1
  row 3  S  = [., ., 5.0, ., .]            one token       -> fallback w~ = 1
  row 4  all padding                       empty response  -> all 0

Eq. 5 (eps -> 0): row 0: min 0.3, max 1.3, spread 1.0 -> I = [0, 0.2, 0.5, 1]
                  row 1: min 0.1, max 0.6, spread 0.5 -> I = [0, 1, 0.5]
Eq. 6 with tau = 0.4, beta = 2 (I < tau: I / tau; else 1 + 2 (I - 0.4) / 0.6):
                  row 0: w = [0, 0.5, 1 + 0.2/0.6 = 4/3, 1 + 1.2/0.6 = 3], sum 29/6
                  row 1: w = [0, 3, 4/3], sum 13/3
Eq. 7 (w * |o| / sum w):
                  row 0: w * 4 / (29/6) = w * 24/29 = [0, 12/29, 32/29, 72/29] (sum 4)
                  row 1: w * 3 / (13/3) = w * 9/13  = [0, 27/13, 12/13]        (sum 3)

``eps=1e-12`` keeps eps's effect (relative O(eps)) far below the 1e-9 tolerance.
"""

from __future__ import annotations

import math

import numpy as np

S_TILDE = np.array([
    [0.3, 0.5, 0.8, 1.3, 0.0],
    [0.0, 0.1, 0.0, 0.6, 0.35],
    [0.2, 0.2, 0.2, 0.0, 0.0],
    [0.0, 0.0, math.log1p(5.0), 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0],
])
MASK = np.array([
    [True, True, True, True, False],
    [False, True, False, True, True],
    [True, True, True, False, False],
    [False, False, True, False, False],
    [False, False, False, False, False],
])
LENGTHS = MASK.sum(1)


def expected_rows(row0, row1, fallback_rows=True):
    """Expected (5, 5) array from the weights of rows 0 and 1 on their real tokens."""
    out = np.zeros((5, 5))
    out[0, :4] = row0
    out[1, [1, 3, 4]] = row1
    if fallback_rows:
        out[2, :3] = 1.0
        out[3, 2] = 1.0
    return out


#: w~ of the example with tau = 0.4, beta = 2, eps -> 0 (derivation above).
HAND = expected_rows([0, 12 / 29, 32 / 29, 72 / 29], [0, 27 / 13, 12 / 13])


def other_namespace(backend, a):
    """The same values in a different array library than ``backend`` (mixed-namespace tests)."""
    if backend.name == "numpy":
        import array_api_strict

        return array_api_strict.asarray(np.asarray(a))
    return np.asarray(a)
