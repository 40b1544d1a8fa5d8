#!/usr/bin/env python3
"""Writes tests/golden/stats.json: inputs and expected statistics computed *outside* pinflow.

Every expected value is computed with exact rational arithmetic (fractions.Fraction: a float
converts to a Fraction exactly) and rounded once, correctly, to the nearest f64. The inputs
are chosen to hurt: large offsets with tiny noise (where a naive one-pass variance loses every
digit), mixed magnitudes, negatives, constants, long lists. Floats are stored as their IEEE-754
bit patterns (u64) so that nothing is lost in JSON; `repr` strings sit beside them for humans.

Run it from the repository root: python3 tools/golden/make_stats_golden.py
The output is deterministic (a seeded PRNG); tests/it/golden_stats.rs reads it.
"""
import json
import math
import random
import struct
from fractions import Fraction

QUANTILES = [Fraction(0), Fraction(1, 2), Fraction(9, 10), Fraction(99, 100), Fraction(1)]


def bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def exact_quantile(sorted_vals, q: Fraction) -> Fraction:
    # Linear interpolation between the closest ranks (numpy's default, DuckDB's quantile_cont):
    # h = (n - 1) q, value = x[floor h] + (h - floor h) (x[ceil h] - x[floor h]).
    n = len(sorted_vals)
    h = (n - 1) * q
    lo = math.floor(h)
    hi = math.ceil(h)
    xl, xh = Fraction(sorted_vals[lo]), Fraction(sorted_vals[hi])
    return xl + (h - lo) * (xh - xl)


def expected(values):
    n = len(values)
    out = {"count": n}
    if n == 0:
        return out
    exact = [Fraction(v) for v in values]
    mean = sum(exact) / n
    out["mean"] = float(mean)
    out["min"] = min(values)
    out["max"] = max(values)
    if n >= 2:
        out["variance"] = float(sum((x - mean) ** 2 for x in exact) / (n - 1))
    s = sorted(values)
    out["quantiles"] = [[float(q), float(exact_quantile(s, q))] for q in QUANTILES]
    return out


def cases():
    rng = random.Random(20261204)
    yield "offset_1e9_noise_1e-3", [1e9 + rng.random() * 1e-3 for _ in range(1000)]
    yield "offset_1e12_noise_1", [1e12 + rng.random() for _ in range(4097)]
    yield "offset_minus_5e8_noise_quarter", [-5e8 + (rng.random() - 0.5) * 0.5 for _ in range(65)]
    yield "log_uniform_1e-8_to_1e8", [10 ** rng.uniform(-8, 8) for _ in range(777)]
    yield "mixed_signs_and_magnitudes", [rng.choice([-1, 1]) * 10 ** rng.uniform(-3, 6) for _ in range(301)]
    yield "two_values_1e-6_apart_at_1e9", [1e9, 1e9 + 2 ** -20]
    yield "constant_at_offset", [1e9 + 0.5] * 1000
    yield "integers_step_7", [float(7 * i) for i in range(20_003)]
    yield "eight_lanes_plus_one", [1e9 + i * 0.125 for i in range(9)]
    yield "single", [42.5]
    yield "empty", []


def encode(stat):
    enc = {}
    for k, v in stat.items():
        if k == "count":
            enc[k] = v
        elif k == "quantiles":
            enc[k] = [{"q": q, "bits": bits(x), "repr": repr(x)} for q, x in v]
        else:
            enc[k] = {"bits": bits(v), "repr": repr(v)}
    return enc


def main():
    doc = {
        "generator": "tools/golden/make_stats_golden.py (exact rationals, rounded once to f64)",
        "cases": [
            {"name": name, "values": [bits(v) for v in vals], "expected": encode(expected(vals))}
            for name, vals in cases()
        ],
    }
    with open("tests/golden/stats.json", "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
