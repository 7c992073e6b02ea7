"""Validation curves of training runs from their ``events.jsonl``: ION NME % per epoch on
chosen val sources (face-count weighted), one line per run, plus a CSV of the points.

    .venv/bin/python benchmarks/plot_val_curves.py runs/p_025 runs/s_final --sources afw helen \
        --tag train --out docs/results/val_curves
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections import Counter
from pathlib import Path


def curve(events: Path, sources: list[str], tag: str = "") -> list[tuple[int, float]]:
    """(epoch, NME) of every ``metric`` event of the last ``start`` with that tag (a pruning
    run's final fine-tuning is the last start; its step fine-tunings come before)."""
    recs = [json.loads(ln) for ln in events.read_text().splitlines() if ln.strip()]
    starts = [i for i, r in enumerate(recs) if r["event"] == "start" and (not tag or r.get("tag") == tag)]
    first = starts[-1] if starts and tag else 0
    out: dict[int, float] = {}
    for r in recs[first:]:
        if r["event"] != "metric":
            continue
        by = r.get("by_source") or {}
        if sources:
            n = sum(by[s]["n"] for s in sources)
            out[r["epoch"]] = sum(by[s]["nme_ion"] * by[s]["n"] for s in sources) / n
        else:
            out[r["epoch"]] = r["nme_ion"]
    return sorted(out.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders holding events.jsonl")
    ap.add_argument("--sources", nargs="*", default=[], help="val sources (default: all faces)")
    ap.add_argument("--tag", default="", help="use the metric events after the last start with this tag")
    ap.add_argument("--ymax", type=float, default=None,
                    help="top of the y axis (a run from ImageNet weights starts far above where it ends); "
                         "the CSV keeps every point")
    ap.add_argument("--group", default="",
                    help="regex removed from a run's name to name its arm (e.g. 's\\d+' for seeds): the runs of an "
                         "arm share a colour, one legend entry, a line style each")
    ap.add_argument("--out", required=True, help="path without suffix: writes OUT.png and OUT.csv")
    a = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    rows = []
    arm_of = {run: re.sub(a.group, "", Path(run).name) for run in a.runs} if a.group else {}
    size = Counter(arm_of.values())
    drawn: Counter[str] = Counter()  # runs of each arm drawn so far: picks the line style
    styles = ["-", "--", ":", "-."]
    for run in a.runs:
        pts = curve(Path(run) / "events.jsonl", a.sources, a.tag)
        if not pts:
            continue
        name = Path(run).name
        if a.group:
            arm = arm_of[run]
            k = drawn[arm]
            drawn[arm] += 1
            style = {"color": f"C{list(drawn).index(arm) % 10}", "ls": styles[k % len(styles)],
                     "label": f"{arm} ({size[arm]} runs)" if k == 0 else "_nolegend_"}
        else:
            style = {"label": name}
        ax.plot([e for e, _ in pts], [v for _, v in pts], marker="o", ms=3, **style)
        rows += [(Path(run).name, e, round(v, 4)) for e, v in pts]
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"val ION NME % ({'+'.join(a.sources) or 'all'})")
    if a.ymax is not None:
        ax.set_ylim(top=a.ymax)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png, csv_path = Path(a.out + ".png"), Path(a.out + ".csv")  # not with_suffix: names like "x-0.25x"
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    with csv_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "epoch", "nme_ion"])
        w.writerows(rows)
    print(f"wrote {png} and {csv_path} ({len(rows)} points)")


if __name__ == "__main__":
    main()
