"""scripts/audit_deps.py, the CI dependency audit: which findings fail the step, what the locked set is, and
that an audit that cannot run says SKIPPED instead of passing. (pip-audit itself is not installed in the
test environment: the report shapes below are pip-audit 2.10's ``-f json`` output.)"""

from __future__ import annotations

import importlib.util
import stat
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("audit_deps", ROOT / "scripts" / "audit_deps.py")
audit = importlib.util.module_from_spec(_spec)
sys.modules["audit_deps"] = audit
_spec.loader.exec_module(audit)

REPORT = {"dependencies": [
    {"name": "requests", "version": "2.19.1", "vulns": [
        {"id": "PYSEC-2018-28", "fix_versions": ["2.20.0"], "aliases": ["CVE-2018-18074"], "description": "..."}]},
    {"name": "jinja2", "version": "3.1.6", "vulns": []},
    {"name": "somepkg", "version": "1.0", "vulns": [{"id": "GHSA-xxxx", "fix_versions": [], "aliases": []}]},
    {"name": "private", "skip_reason": "Dependency not found on PyPI and could not be audited: private (0.1)"},
], "fixes": []}


def test_classify_fails_only_on_a_vulnerability_with_a_fix():
    r = audit.classify(REPORT)
    assert r.fixable == ["requests 2.19.1: PYSEC-2018-28, CVE-2018-18074 (fix: 2.20.0)"]
    assert r.unfixable == ["somepkg 1.0: GHSA-xxxx (no fixed release)"]
    assert r.unaudited == ["private: Dependency not found on PyPI and could not be audited: private (0.1)"]
    assert r.audited == 3


def test_a_mirror_without_vulnerability_data_audits_nothing():
    """What pip-audit prints as "No known vulnerabilities found" behind this project's package mirror."""
    r = audit.classify({"dependencies": [{"name": "requests", "skip_reason": "Dependency not found on PyPI and "
                                          "could not be audited: requests (2.19.1)"}], "fixes": []})
    assert r.fixable == [] and r.audited == 0 and len(r.unaudited) == 1


def test_the_locked_set_is_the_constraints_plus_the_torch_pin():
    pins = audit.locked_requirements()
    lines = [x for x in (ROOT / "scripts" / "constraints.txt").read_text().splitlines()
             if x.strip() and not x.startswith("#")]  # pip freeze's "# Editable Git install ..." is no pin
    assert pins[:-1] == lines and pins[-1] == "torch==2.13.0" and len(pins) == 89
    assert all("==" in p for p in pins)


def _fake_pip_audit(tmp_path: Path, canary_json: str) -> Path:
    """A stand-in executable that answers every audit with ``canary_json`` (the real one needs a network)."""
    exe = tmp_path / "pip-audit"
    exe.write_text(f"#!/bin/sh\ncat <<'EOF'\n{canary_json}\nEOF\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


@pytest.mark.parametrize("require, code", [(False, 0), (True, 2)])
def test_no_pip_audit_is_a_skipped_line_not_a_pass(tmp_path, capsys, require, code):
    argv = ["--pip-audit", str(tmp_path / "missing")] + (["--require"] if require else [])
    assert audit.main(argv) == code
    out = capsys.readouterr().out
    assert out.startswith("dependency audit: SKIPPED, nothing was audited:") and "passed" not in out


def test_a_service_that_misses_the_canary_is_skipped(tmp_path, capsys):
    exe = _fake_pip_audit(tmp_path, '{"dependencies": [{"name": "requests", "skip_reason": "not found"}], '
                                    '"fixes": []}')
    assert audit.main(["--pip-audit", str(exe), "--require"]) == 2
    out = capsys.readouterr().out
    assert "SKIPPED" in out and "requests==2.19.1" in out and "cannot be trusted" in out


def test_a_fixable_vulnerability_fails_the_step(tmp_path, capsys):
    import json

    exe = _fake_pip_audit(tmp_path, json.dumps(REPORT))  # canary and locked set both answered with REPORT
    assert audit.main(["--pip-audit", str(exe)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert "dependency audit: VULNERABLE (a fix exists): requests 2.19.1: PYSEC-2018-28, CVE-2018-18074 " \
           "(fix: 2.20.0)" in out
    assert out[-1].startswith("dependency audit: FAILED: 3 of ")


def test_a_clean_set_passes(tmp_path, capsys):
    import json

    canary = {"dependencies": [REPORT["dependencies"][0]]}
    clean = {"dependencies": [{"name": "jinja2", "version": "3.1.6", "vulns": []}]}
    exe = tmp_path / "pip-audit"
    # the canary's requirement file names requests==2.19.1; everything else is the locked set
    exe.write_text(f"#!/bin/sh\nif grep -q 'requests==2.19.1' \"$2\"; then cat <<'EOF'\n{json.dumps(canary)}\nEOF\n"
                   f"else cat <<'EOF'\n{json.dumps(clean)}\nEOF\nfi\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    assert audit.main(["--pip-audit", str(exe)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("dependency audit: passed: 1 of ")


def test_ci_runs_the_audit():
    assert "scripts/audit_deps.py" in (ROOT / ".ci" / "run").read_text()
