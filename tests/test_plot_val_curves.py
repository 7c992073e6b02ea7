"""benchmarks/plot_val_curves.py: the per-epoch curve read from a run's events, the face-weighted mean over the
chosen sources, and --group (the seeds of an arm share one colour and one legend entry)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(folder: Path, values: list[float]) -> Path:
    folder.mkdir(parents=True)
    ev = [{"event": "start", "tag": "distill"}]
    ev += [{"event": "metric", "epoch": e + 1, "nme_ion": 9.0,
            "by_source": {"afw": {"nme_ion": v, "n": 1}, "helen": {"nme_ion": v + 4, "n": 3},
                          "ytf": {"nme_ion": 50, "n": 9}}}
           for e, v in enumerate(values)]
    (folder / "events.jsonl").write_text("\n".join(json.dumps(r) for r in ev) + "\n")
    return folder


def test_curves_weight_the_sources_by_faces_and_group_seeds(tmp_path: Path) -> None:
    runs = [_run(tmp_path / name, vals) for name, vals in
            (("k_as0_1", [8.0, 6.0]), ("k_as1_1", [7.0, 5.0]), ("k_bs0_1", [4.0, 2.0]))]
    out = tmp_path / "plot"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "plot_val_curves.py"), *map(str, runs),
                          "--sources", "afw", "helen", "--group", r"s\d+", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert Path(f"{out}.png").stat().st_size > 0
    rows = list(csv.DictReader(Path(f"{out}.csv").open()))
    assert [(r["run"], int(r["epoch"]), float(r["nme_ion"])) for r in rows[:2]] == [("k_as0_1", 1, 11.0),
                                                                                  ("k_as0_1", 2, 9.0)]
    assert len(rows) == 6 and float(rows[-1]["nme_ion"]) == 5.0  # (2 + 3 * 6) / 4
