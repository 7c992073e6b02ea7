"""scripts/gpu/collect.py: the summary a GPU run brings back, read from the runs' event streams."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _collect():
    spec = importlib.util.spec_from_file_location("gpu_collect", REPO / "scripts" / "gpu" / "collect.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _metric(epoch: int, afw: float, helen: float) -> dict:
    return {"event": "metric", "time": 10.0 + epoch, "epoch": epoch, "nme_ion": 9.0,
            "by_source": {"afw": {"nme_ion": afw, "n": 43}, "helen": {"nme_ion": helen, "n": 100},
                          "ytf": {"nme_ion": 9.5, "n": 770}}}


def test_summary_reads_curves_and_the_best_from_the_events(tmp_path: Path) -> None:
    run = tmp_path / "kd0_h"
    run.mkdir()
    evs = [{"event": "start", "time": 0.0, "train_samples": 1064},
           {"event": "progress", "time": 1.0, "img_s": 400.0}, _metric(1, 5.0, 4.0),
           {"event": "progress", "time": 2.0, "img_s": 420.0}, _metric(2, 4.3, 3.6),
           {"event": "done", "time": 13.0, "best": {"score": 3.81, "epoch": 2, "decode": "fusion"}}]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evs))
    (tmp_path / "empty").mkdir()  # a run that never started: listed, nothing known
    got = _collect().summary(tmp_path)
    rec = got["kd0_h"]
    assert rec["curve_ah"] == [round((5.0 * 43 + 4.0 * 100) / 143, 3), round((4.3 * 43 + 3.6 * 100) / 143, 3)]
    assert (rec["best_score"], rec["best_epoch"], rec["decode"]) == (3.81, 2, "fusion")  # no checkpoint needed
    assert rec["train_samples"] == 1064 and rec["epochs_run"] == 2 and rec["wall_s"] == 13.0
    assert got["empty"] == {}


def test_a_val_without_afw_helen_faces_scores_on_all_of_it() -> None:
    assert _collect().afw_helen_score({"nme_ion": 7.5, "by_source": {"ytf": {"nme_ion": 7.5, "n": 770}}}) == 7.5


def test_pick_teacher_weighs_runs_against_a_carried_checkpoint(tmp_path: Path, capsys) -> None:
    import torch

    runs = tmp_path / "runs"
    for name, score in (("tr50_h", 3.71), ("tmnv2_h", 3.64)):
        (runs / name / "checkpoints").mkdir(parents=True)
        torch.save({"best": {"score": score, "epoch": 3}}, runs / name / "checkpoints" / "best.pt")
    carried = tmp_path / "teacher.pt"
    torch.save({"best": {"score": 3.578, "epoch": 3}}, carried)
    mod = _collect()
    assert mod.main(["--runs", str(runs), "--pick-teacher", "tr50_h", "tmnv2_h", "missing_h"]) == 0
    assert capsys.readouterr().out.strip() == str(runs / "tmnv2_h" / "checkpoints" / "best.pt")
    assert mod.main(["--runs", str(runs), "--pick-teacher", "tr50_h", str(carried)]) == 0
    assert capsys.readouterr().out.strip() == str(carried)
    assert mod.main(["--runs", str(runs), "--pick-teacher", "missing_h"]) == 1
