"""Turning comparisons.Case objects into pytest-benchmark parameters."""

import pytest

from comparisons import ENGINES


def case_params(cases, engines=ENGINES):
    """pytest parameters (case, engine); each case is its own benchmark group."""
    return [pytest.param(case, engine, id=f"{case.key}-{engine}",
                         marks=pytest.mark.benchmark(group=case.label))
            for case in cases for engine in engines]


def prepared_call(case, engine):
    """The case's warmed-up call for the engine, or a skip when the engine is missing."""
    if engine not in case.builders:
        pytest.skip(f"no {engine} version here (PyTorch, or SciPy for NumPy's GELU, not installed)")
    return case.prepare(engine)
