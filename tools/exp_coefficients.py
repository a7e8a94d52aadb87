"""Derive and check the coefficients of the vector exp (csrc/fsce_rows_impl.h).

    python tools/exp_coefficients.py            # check the shipped coefficients
    python tools/exp_coefficients.py --fit      # also derive them again and compare

The row helpers compute exp(t) = 2**n p(r), with n = round(t / ln 2) and
r = t - n ln 2 in [-ln2/2, ln2/2].  p is the polynomial 1 + c1 r + ... + cD r**D
(the constant term held at exactly 1, so exp(0) = 1 exactly: a confident row's
max term must be exactly 1) that minimises the largest *relative* error
|p(r) e**-r - 1| on that interval: degree 5 for float32, 11 for float64.

Method: p(r) e**-r - 1 = w(r) (q(r) - g(r)) with q = (p - 1) / r of degree D - 1,
g(r) = (e**r - 1) / r and the weight w(r) = r e**-r, which changes sign at 0; so
the best q makes |w| (q - g) = sign(r) (p e**-r - 1) equioscillate (the Remez
exchange algorithm, weighted).  On D + 1 reference points x_i it solves
    (1 + sum_k c_k x_i**k) e**-x_i - 1 = (-1)**i sign(x_i) E
for c_1..c_D and the levelled error E, moves the points to the extrema of that
curve, and repeats until the extrema are level.  All
arithmetic is in mpmath at 50 digits, so the error bound printed is that of the
polynomial itself; the float rounding of the evaluation adds about one ULP
(measured exhaustively for float32 in tests/test_exp.py).

--check (the default) parses EXP_COEFFS from the C header, evaluates the error on
a fine grid and fails (exit 1) if it exceeds the bound the header states.
Needs mpmath (a dependency of sympy, which PyTorch brings; or pip install mpmath).
"""

import argparse
import pathlib
import re
import sys

import mpmath as mp

mp.mp.dps = 50
HEADER = pathlib.Path(__file__).resolve().parent.parent / "csrc" / "fsce_rows_impl.h"
HALF_LN2 = mp.log(2) / 2
#: degree and the relative error bound the header documents, per dtype
TARGETS = {"float64": (11, 3.5e-18), "float32": (5, 9.3e-8)}
GRID_POINTS = 4001


def shipped_coefficients():
    """{dtype: [c1, ..., cD]} parsed from the EXP_COEFFS of fsce_rows_impl.h."""
    text = HEADER.read_text()
    blocks = re.findall(r"#define EXP_COEFFS \{(.*?)\}", text, flags=re.S)
    assert len(blocks) == 2, "expected one EXP_COEFFS per dtype (float64 first)"
    parse = [
        [mp.mpf(v.strip().rstrip("f")) for v in b.replace("\\", "").split(",")] for b in blocks
    ]
    return {"float64": parse[0], "float32": parse[1]}


def relative_error(coefficients, r):
    """p(r) e**-r - 1 for p = 1 + sum_k c_k r**k."""
    p = mp.mpf(1)
    for k, c in enumerate(coefficients, start=1):
        p += c * r**k
    return p * mp.exp(-r) - 1


def grid():
    return [-HALF_LN2 + 2 * HALF_LN2 * i / (GRID_POINTS - 1) for i in range(GRID_POINTS)]


def max_relative_error(coefficients):
    return max(abs(relative_error(coefficients, r)) for r in grid())


def extrema(coefficients, count):
    """`count` points where sign(r) (p(r) e**-r - 1) has alternating local extrema (the
    largest of each run of one sign), found on the grid."""
    points = grid()
    errors = [mp.sign(r) * relative_error(coefficients, r) for r in points]
    runs, current = [], [0]
    for i in range(1, len(points)):
        if mp.sign(errors[i]) == mp.sign(errors[current[-1]]) or errors[i] == 0:
            current.append(i)
        else:
            runs.append(current)
            current = [i]
    runs.append(current)
    best = [max(run, key=lambda i: abs(errors[i])) for run in runs]
    while len(best) > count:  # drop the smallest extremum, then merge neighbours of one sign
        del best[min(range(len(best)), key=lambda k: abs(errors[best[k]]))]
        merged = [best[0]]
        for i in best[1:]:
            if mp.sign(errors[i]) == mp.sign(errors[merged[-1]]):
                merged[-1] = max(merged[-1], i, key=lambda j: abs(errors[j]))
            else:
                merged.append(i)
        best = merged
    if len(best) < count:
        raise RuntimeError(f"only {len(best)} alternating extrema, need {count}")
    return [points[i] for i in best]


def remez(degree, iterations=30):
    """Minimax relative-error coefficients c1..c_degree of exp on [-ln2/2, ln2/2]."""
    n = degree + 1
    reference = [-HALF_LN2 * mp.cos(mp.pi * i / (n - 1)) for i in range(n)]  # Chebyshev
    coefficients = None
    for _ in range(iterations):
        matrix = mp.matrix(n, n)
        rhs = mp.matrix(n, 1)
        for i, x in enumerate(reference):
            for k in range(1, degree + 1):
                matrix[i, k - 1] = x**k * mp.exp(-x)
            matrix[i, degree] = -((-1) ** i) * mp.sign(x)
            rhs[i] = 1 - mp.exp(-x)
        solution = mp.lu_solve(matrix, rhs)
        coefficients = [solution[k] for k in range(degree)]
        reference = extrema(coefficients, n)
    return coefficients


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", action="store_true", help="derive the coefficients again")
    args = parser.parse_args()
    failed = False
    for dtype, coefficients in shipped_coefficients().items():
        degree, bound = TARGETS[dtype]
        error = max_relative_error(coefficients)
        ok = len(coefficients) == degree and error <= bound * 1.05
        failed |= not ok
        print(
            f"{dtype}: degree {len(coefficients)}, max relative error {mp.nstr(error, 3)} "
            f"(bound {bound:g}): {'ok' if ok else 'FAILED'}"
        )
        if args.fit:
            fitted = remez(degree)
            print(
                f"  Remez, degree {degree}: max relative error "
                f"{mp.nstr(max_relative_error(fitted), 3)}"
            )
            for k, (c_fit, c_shipped) in enumerate(zip(fitted, coefficients), start=1):
                print(f"    c{k:<2} {mp.nstr(c_fit, 25):>32}   shipped {mp.nstr(c_shipped, 17)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
