#!/usr/bin/env python3
"""Fail CI when the demo's merged model scores below the F1 floor written in README.md.

The README holds one line `Demo F1 floor: merged <metric> >= <number>`; the demo writes
`<workdir>/eval/summary.json`. Usage: .ci/check_demo_f1.py [summary.json] [README.md]
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOOR = re.compile(r"Demo F1 floor: (\w+) (\w+) >= ([0-9.]+)")


def main(summary_path: str, readme: str) -> int:
    m = FLOOR.search(Path(readme).read_text())
    if not m:
        print(f"{readme}: no line 'Demo F1 floor: <checkpoint> <metric> >= <number>'")
        return 2
    checkpoint, metric, floor = m.group(1), m.group(2), float(m.group(3))
    try:
        summary = json.loads(Path(summary_path).read_text())
    except (OSError, ValueError) as e:
        print(f"cannot read the demo's evaluation summary {summary_path}: {e}")
        return 2
    rows = {c["checkpoint"]: c["summary"] for c in summary.get("checkpoints", [])}
    if metric not in rows.get(checkpoint, {}):
        print(f"{summary_path} has no {metric} for checkpoint {checkpoint!r} (checkpoints: {sorted(rows)})")
        return 2
    value = rows[checkpoint][metric]
    ok = value >= floor
    print(f"demo {checkpoint} {metric} F1 {value:.1f} {'>=' if ok else '<'} floor {floor:.1f}: {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(args[0] if args else str(ROOT / "build/demo-real/eval/summary.json"),
                  args[1] if len(args) > 1 else str(ROOT / "README.md")))
