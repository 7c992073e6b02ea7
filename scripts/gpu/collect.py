"""What a GPU run (scripts/gpu/teacher_distill.sh) brings back, within the device tool's limits on returned files.

``--pick-teacher RUN...``: prints the best.pt of the run with the lowest selection score (AFW+HELEN val NME); a
candidate may also be a checkpoint file (e.g. a carried teacher), scored by the best it records.
``--out OUT --teacher T``: writes into OUT

- ``logs.tgz``: every run's log, error log, events and config, and ``summary.json`` (each run's best epoch, score,
  epochs and samples seen), also printed;
- the teacher T and the student arms' best checkpoints as half-precision *slim* checkpoints (the weights and the
  run's config and history, no optimizer state: enough to export, evaluate, distil from or continue from),
  split into ``NAME.pt.partK`` pieces where one is over 15 MiB; as many as fit in 7 files and 62 MiB, the
  teacher first, then the no-distillation arm, then the other arms best first.

Join pieces with ``cat NAME.pt.part* > NAME.pt``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

import torch

from training.jobs.engine import TrainingError, selection_score

MAX_FILES, MAX_TOTAL, PIECE = 7, 62 * 2**20, 15 * 2**20  # 8 files come back: one is left for the run log


def checkpoint_of(runs: Path, candidate: str) -> Path:
    """A candidate teacher: a checkpoint file itself, or the best.pt of the run folder RUNS/CANDIDATE."""
    p = Path(candidate)
    return p if p.is_file() else runs / candidate / "checkpoints" / "best.pt"


def best_of(p: Path) -> dict | None:
    """A checkpoint's path, the score, epoch and decoding of the best it records; None where there is no file."""
    if not p.is_file():
        return None
    st = torch.load(p, map_location="cpu", weights_only=False)
    return {"path": str(p), "score": float(st["best"]["score"]), "epoch": int(st["best"]["epoch"]),
            "decode": st["best"].get("decode")}


def summary(runs: Path) -> dict:
    out = {}
    for run in sorted(p for p in runs.iterdir() if p.is_dir()):
        events = run / "events.jsonl"
        rec: dict = {}
        evs: list[dict] = []
        if events.is_file():
            evs = [json.loads(ln) for ln in events.read_text().splitlines() if ln.strip()]
            starts = [e for e in evs if e["event"] == "start"]
            metrics = [e for e in evs if e["event"] == "metric"]
            budget = [e for e in evs if e["event"] == "log" and "time_budget_s" in e.get("message", "")]
            rec = {"train_samples": starts[0].get("train_samples") if starts else None,
                   "epochs_run": len(metrics), "budget_note": budget[0]["message"] if budget else None,
                   "curve_ah": [round(afw_helen_score(m), 3) for m in metrics],
                   "wall_s": round(evs[-1]["time"] - evs[0]["time"], 1) if evs else None,
                   "img_s": _img_s(evs)}
        done = [e for e in evs if e["event"] == "done" and e.get("best")]
        b = ({"score": done[-1]["best"]["score"], "epoch": done[-1]["best"]["epoch"],
              "decode": done[-1]["best"].get("decode")} if done
             else best_of(run / "checkpoints" / "best.pt"))  # the checkpoint when no "done"
        if b:
            rec |= {"best_score": round(b["score"], 4), "best_epoch": b["epoch"], "decode": b["decode"]}
        out[run.name] = rec
    return out


def afw_helen_score(metric: dict) -> float:
    """The AFW+HELEN val NME of a metric event (all of val where it has no such faces)."""
    try:
        return selection_score(metric, "nme_ion", ("afw", "helen"))
    except TrainingError:
        return float(metric.get("nme_ion", "nan"))


def _img_s(evs: list[dict]) -> float | None:
    rates = [e["img_s"] for e in evs if e["event"] == "progress" and "img_s" in e]
    return round(sorted(rates)[len(rates) // 2], 1) if rates else None


def slim(st: dict) -> bytes:
    keep = {k: st[k] for k in ("format", "run_config", "model_config", "best", "history", "epoch", "step_in_epoch",
                               "tag") if k in st}
    keep["model_state"] = {k: (v.half() if v.is_floating_point() else v) for k, v in st["model_state"].items()}
    if st.get("model_object") is not None:
        keep["model_object"] = st["model_object"].half()
    buf = io.BytesIO()
    torch.save(keep, buf)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--pick-teacher", nargs="+")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--teacher")
    a = ap.parse_args(argv)
    if a.pick_teacher:
        found = [b for b in (best_of(checkpoint_of(a.runs, r)) for r in a.pick_teacher) if b]
        if not found:
            print("collect: no teacher run has a best.pt", file=sys.stderr)
            return 1
        print(min(found, key=lambda b: b["score"])["path"])
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    summ = summary(a.runs)
    print(json.dumps(summ, indent=1))
    with tarfile.open(a.out / "logs.tgz", "w:gz") as tar:
        data = json.dumps(summ, indent=1).encode()
        info = tarfile.TarInfo("summary.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for run in sorted(a.runs.iterdir()):
            if run.is_file() and run.suffix in (".log", ".err"):
                tar.add(run, arcname=run.name)
            elif run.is_dir():
                for f in ("events.jsonl", "config.json"):
                    if (run / f).is_file():
                        tar.add(run / f, arcname=f"{run.name}/{f}")
    files, total = 1, (a.out / "logs.tgz").stat().st_size
    arms = sorted((r.name for r in a.runs.iterdir() if r.is_dir() and r.name.startswith("kd") and r.name.endswith("_h")
                   and summ.get(r.name, {}).get("best_score") is not None),
                  key=lambda n: (n != "kd0_h", summ[n]["best_score"]))
    wanted = ([("teacher", Path(a.teacher))] if a.teacher else []) + \
        [(n, a.runs / n / "checkpoints" / "best.pt") for n in arms]
    for name, path in wanted:
        if not path.is_file():
            continue
        blob = slim(torch.load(path, map_location="cpu", weights_only=False))
        pieces = [blob[i:i + PIECE] for i in range(0, len(blob), PIECE)]
        if files + len(pieces) > MAX_FILES or total + len(blob) > MAX_TOTAL:
            print(f"collect: {name} ({len(blob) / 2**20:.1f} MiB) left behind: no room", file=sys.stderr)
            continue
        if len(pieces) == 1:
            (a.out / f"{name}.pt").write_bytes(blob)
        else:
            for k, p in enumerate(pieces):
                (a.out / f"{name}.pt.part{k}").write_bytes(p)
        files, total = files + len(pieces), total + len(blob)
        print(f"collect: {name} <- {path} ({len(blob) / 2**20:.1f} MiB, {len(pieces)} file(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
