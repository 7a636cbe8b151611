#!/usr/bin/env python3
"""Audit the locked dependency set (scripts/constraints.txt + the torch pin of scripts/setup.sh) for known
vulnerabilities with pip-audit; fail when one has a fixed version to move to.

Why the checks around pip-audit: pip-audit reports "No known vulnerabilities found" and exits 0 both when
the set is clean and when its vulnerability service could not answer for a package ("Dependency not found
on PyPI and could not be audited", as behind a package mirror that serves no vulnerability data). So this
script
  1. first audits a canary, a release with a published, fixed vulnerability (requests 2.19.1,
     CVE-2018-18074, fixed in 2.20.0); if the service does not report it, nothing can be audited here and
     the step prints one ``SKIPPED`` line saying why (exit 0, or 2 with --require) instead of passing;
  2. then audits every pinned package and reports which could not be audited.

Exit status: 0 clean (or SKIPPED), 1 a vulnerability with a fix is in the locked set, 2 SKIPPED under
--require. pip-audit runs from its own virtual environment (``--tool-venv``, created on first use with
``pip install pip-audit==PIN``), so it never enters the audited set.

Usage: python scripts/audit_deps.py [--service pypi|osv] [--require] [--tool-venv PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import venv
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIP_AUDIT_PIN = "pip-audit==2.10.1"
CANARY = "requests==2.19.1"  # CVE-2018-18074 (PYSEC-2018-28), fixed in 2.20.0


@dataclass
class AuditResult:
    """pip-audit's JSON report, sorted into what decides the step."""

    fixable: list[str] = field(default_factory=list)    # "name version: id (fix: versions)"
    unfixable: list[str] = field(default_factory=list)  # known, no fixed release yet: reported, not failed
    unaudited: list[str] = field(default_factory=list)  # "name: why" (the service had no answer)
    audited: int = 0


def classify(report: dict) -> AuditResult:
    """Sort pip-audit's ``-f json`` report: a vulnerability with ``fix_versions`` fails the audit, one
    without is reported, a dependency with a ``skip_reason`` was not audited at all."""
    result = AuditResult()
    for dep in report.get("dependencies", []):
        name = f"{dep['name']} {dep.get('version', '?')}"
        if "skip_reason" in dep:
            result.unaudited.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        result.audited += 1
        for vuln in dep.get("vulns", []):
            ids = ", ".join([vuln["id"], *vuln.get("aliases", [])])
            if vuln.get("fix_versions"):
                result.fixable.append(f"{name}: {ids} (fix: {', '.join(vuln['fix_versions'])})")
            else:
                result.unfixable.append(f"{name}: {ids} (no fixed release)")
    return result


def locked_requirements(root: Path = ROOT) -> list[str]:
    """The pins the project installs: every ``name==version`` of constraints.txt, plus setup.sh's torch."""
    pins = [line.split("#", 1)[0].strip() for line in (root / "scripts" / "constraints.txt").read_text().splitlines()]
    pins = [p for p in pins if p]
    torch = re.search(r"run_pip (torch==[\w.+-]+)", (root / "scripts" / "setup.sh").read_text())
    if torch and not any(p.startswith("torch==") for p in pins):
        pins.append(torch.group(1))
    return pins


def run_pip_audit(pip_audit: Path, requirements: list[str], service: str) -> tuple[dict | None, str]:
    """pip-audit's JSON report for exactly ``requirements`` (no resolution, no install), or None and why."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as req:
        req.write("\n".join(requirements) + "\n")
        req.flush()
        proc = subprocess.run([str(pip_audit), "-r", req.name, "--no-deps", "--disable-pip", "-s", service,
                               "-f", "json", "--progress-spinner", "off"],
                              capture_output=True, text=True, timeout=600)
    try:
        return json.loads(proc.stdout), ""
    except json.JSONDecodeError:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"pip-audit exited {proc.returncode}: {tail[:300]}"


def ensure_pip_audit(tool_venv: Path) -> tuple[Path | None, str]:
    """pip-audit in its own venv, installed from the package registry on first use; None and why if not."""
    exe = tool_venv / "bin" / "pip-audit"
    if exe.exists():
        return exe, ""
    try:
        venv.create(tool_venv, with_pip=True)
        proc = subprocess.run([str(tool_venv / "bin" / "python"), "-m", "pip", "install", "-q",
                               "--disable-pip-version-check", PIP_AUDIT_PIN],
                              capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"could not create {tool_venv}: {e}"
    if proc.returncode != 0 or not exe.exists():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"could not install {PIP_AUDIT_PIN}: {tail[:300]}"
    return exe, ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", choices=("pypi", "osv"), default="pypi",
                        help="pip-audit's vulnerability service (pypi: PyPI's JSON API; osv: api.osv.dev)")
    parser.add_argument("--require", action="store_true",
                        help="exit 2 instead of 0 when the audit cannot run (no pip-audit, no service)")
    parser.add_argument("--tool-venv", type=Path, default=ROOT / ".audit-venv",
                        help="virtual environment holding pip-audit (created on first use)")
    parser.add_argument("--pip-audit", type=Path, default=None,
                        help="a pip-audit executable to use instead of the tool venv's")
    args = parser.parse_args(argv)

    def skipped(why: str) -> int:
        print(f"dependency audit: SKIPPED, nothing was audited: {why}")
        return 2 if args.require else 0

    if args.pip_audit is not None:
        exe, why = (args.pip_audit, "") if args.pip_audit.exists() else (None, f"{args.pip_audit} not found")
    else:
        exe, why = ensure_pip_audit(args.tool_venv)
    if exe is None:
        return skipped(why)
    canary, why = run_pip_audit(exe, [CANARY], args.service)
    if canary is None:
        return skipped(f"the {args.service} vulnerability service could not be queried ({why})")
    if not classify(canary).fixable:
        reason = "; ".join(classify(canary).unaudited) or "no vulnerability reported"
        return skipped(f"the {args.service} vulnerability service does not report the known, fixed "
                       f"vulnerability of {CANARY} ({reason}), so its answers cannot be trusted here")
    pins = locked_requirements()
    report, why = run_pip_audit(exe, pins, args.service)
    if report is None:
        return skipped(f"auditing the locked set failed ({why})")
    result = classify(report)
    for line in result.unaudited:
        print(f"dependency audit: not audited: {line}")
    for line in result.unfixable:
        print(f"dependency audit: known vulnerability without a fix: {line}")
    for line in result.fixable:
        print(f"dependency audit: VULNERABLE (a fix exists): {line}")
    summary = (f"{result.audited} of {len(pins)} locked packages audited ({args.service}), "
               f"{len(result.fixable)} vulnerabilities with a fix, {len(result.unfixable)} without")
    if result.fixable:
        print(f"dependency audit: FAILED: {summary}")
        return 1
    if result.audited == 0:
        return skipped(f"the service could audit none of the {len(pins)} locked packages")
    print(f"dependency audit: passed: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
