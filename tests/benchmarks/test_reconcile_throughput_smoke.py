"""Smoke test of ``benchmarks/reconcile_throughput.py``: N=20 on the emulator, every system converges.

Correctness only (no timing assertions): each Counter's ``status.observed`` reaches ``spec.value`` after the creates,
again after the updates and once more after a restart with every spec changed, for kreconcile, kopf and the bare
client, and the figures the table is built from are present and consistent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
N = 20


@pytest.mark.slow
def test_every_system_converges_on_the_emulator(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "reconcile_throughput.py"), "--n", str(N), "--singles", "5",
         "--json-out", str(out)],
        capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(out.read_text())
    assert set(results["systems"]) == {"kreconcile", "kopf", "bare"}
    for system, figures in results["systems"].items():
        for phase in ("create", "update"):
            assert figures[phase]["converged"], f"{system} {phase}: {figures[phase]}"
            assert figures[phase]["converged_objects"] == N
            assert figures[phase]["reconciles"] >= N, f"{system} {phase} reconciled fewer objects than it converged"
        assert figures["latency"]["count"] == 5
        # a fresh process started after all specs changed catches up with every object
        assert figures["backlog"]["converged"] and figures["backlog"]["converged_objects"] == N, figures["backlog"]
        assert figures["rss_after_create_mib"] > 0
    # kreconcile writes exactly one status patch per change and nothing else (GenerationChanged filters its own
    # status writes out), reading from its cache: one request per object.
    k = results["systems"]["kreconcile"]
    for phase in ("create", "update"):
        assert k[phase]["writes_per_object"] == 1.0, k[phase]["requests"]
        assert k[phase]["reconciles"] == N
    # after a restart it lists once and writes one status per changed object
    assert k["backlog"]["writes_per_object"] == 1.0, k["backlog"]["requests"]
    # kopf writes its last-handled-configuration annotation besides the status: two writes per object.
    assert results["systems"]["kopf"]["create"]["writes_per_object"] >= 2.0
    # the ratios are printed
    assert "kreconcile/kopf:" in proc.stdout and "kreconcile/bare:" in proc.stdout
