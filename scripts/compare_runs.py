"""Compare two pipeline results.json files on what a run measured, ignoring what differs by machine.

    python scripts/compare_runs.py RUN_A/results.json RUN_B/results.json

Drops wall times and throughputs (keys with "seconds", "_per_s", "wall"), rewrites each run folder to
one name, and ignores engine keys that one version lacks and the other sets to null (a new optional
setting). Prints the differing leaves and exits 1 when any measured value differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SKIP = ("seconds", "_per_s", "wall")


def normalise(x: Any, folder: str) -> Any:
    if isinstance(x, dict):
        return {k: normalise(v, folder) for k, v in x.items() if not any(s in k for s in SKIP) and v is not None}
    if isinstance(x, list):
        return [normalise(v, folder) for v in x]
    return x.replace(folder, "<run>") if isinstance(x, str) else x


def run_folder(results: dict, path: Path) -> str:
    """The run folder as the run wrote it (its config's ``out``), else the file's folder."""
    return str((results.get("config") or {}).get("out") or path.parent)


def leaves(x: Any, path: str = "") -> dict[str, Any]:
    if isinstance(x, dict):
        return {k: v for key, val in x.items() for k, v in leaves(val, f"{path}.{key}").items()}
    if isinstance(x, list):
        return {k: v for i, val in enumerate(x) for k, v in leaves(val, f"{path}[{i}]").items()}
    return {path: x}


def main(argv: list[str]) -> int:
    a_raw, b_raw = (json.loads(Path(p).read_text()) for p in argv)
    a = leaves(normalise(a_raw, run_folder(a_raw, Path(argv[0]))))
    b = leaves(normalise(b_raw, run_folder(b_raw, Path(argv[1]))))
    diffs = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    for k in diffs:
        print(f"{k}: {a.get(k)!r} != {b.get(k)!r}")
    print(f"{len(a.keys() | b.keys())} values compared, {len(diffs)} differ")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
