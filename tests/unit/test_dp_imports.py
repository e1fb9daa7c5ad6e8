"""dp defers PipelineDP's scipy.stats to its first use (dp.defer_import): a cold `lakehouse run`
skips ~0.8 s of imports, and what uses scipy.stats still gets it whole."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from support import REPO

CODE = """
import sys
import dp.idle, dp.release, dp.engine_pipelinedp
print(type(sys.modules["scipy.stats"]).__name__)
from pipeline_dp import dp_computations
print(repr(float(dp_computations.gaussian_delta(2.0, 1.0))))
print(type(sys.modules["scipy.stats"]).__name__)
"""


def test_scipy_stats_is_loaded_at_its_first_use_only():
    out = subprocess.run([sys.executable, "-c", CODE], cwd=REPO, capture_output=True, text=True, check=True).stdout
    before, delta, after = out.split()
    assert before == "_LazyModule"  # imported by PipelineDP, not run
    assert after == "module"  # run when gaussian_delta called it

    def phi(x: float) -> float:
        return 0.5 * math.erfc(-x / math.sqrt(2))

    # the Gaussian mechanism's exact delta (Balle & Wang 2018, Theorem 8), a = 1 / sigma, from math alone
    a, epsilon = 1 / 2.0, 1.0
    assert float(delta) == pytest.approx(phi(a / 2 - epsilon / a) - math.exp(epsilon) * phi(-a / 2 - epsilon / a),
                                         rel=1e-9)
