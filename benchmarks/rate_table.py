"""The paper's Table 5 from exported models: pruning rate against NME, size and forward time.

    .venv/bin/python benchmarks/rate_table.py --data ../shared/data/face68 \
        --model 0=models/student.onnx --model 50=/work/runs/p8_50/export/student-rate50.onnx \
        --model 75=... --model 90=... --out docs/results/prune_rate_s8

Each ``--model RATE=NAME.onnx`` (its NAME.json beside it) is evaluated on the val list with its own
default decoding (AFW+HELEN, the human-labelled part, and YTF, each face-count weighted) and timed
with every other model in interleaved rounds (``training.evaluation.latency``: a burst of forwards
of each model in turn, so load from other work hits all alike; batch 1, onnxruntime forward only).
Parameters and MACs come from each manifest (written by ``training export``). RATE is a label: a
number (the pruning rate %; the plot joins the points) or any text (e.g. ``50-int8``). Prints a Markdown
table; ``--out`` also writes it as OUT.md / OUT.csv and the NME-latency plot as OUT.png
(``--replot OUT.csv --out OUT`` draws the plot again without measuring).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

COLUMNS = ("rate", "params", "macs", "onnx_mb", "nme_afw_helen", "nme_ytf", "median_ms", "min_ms")


def parse_models(items: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for it in items:
        rate, sep, path = it.partition("=")
        if not sep or not rate or not path:
            raise SystemExit(f"--model {it!r}: expected RATE=PATH.onnx")
        p = Path(path).expanduser()
        if not p.is_file() or not p.with_suffix(".json").is_file():
            raise SystemExit(f"--model {it!r}: {p} or its manifest {p.with_suffix('.json').name} is missing")
        out[rate] = p
    return out


def table_rows(models: dict[str, Path], data: str, list_name: str, threads: int, rounds: int,
               runs: int) -> list[dict]:
    from training.evaluation.evaluate import evaluate_file
    from training.evaluation.latency import interleaved_latency
    from training.jobs.engine import selection_score

    manifests = {rate: json.loads(p.with_suffix(".json").read_text()) for rate, p in models.items()}
    sizes = {m["input_size"] for m in manifests.values()}
    if len(sizes) != 1:
        raise SystemExit(f"the models take different input sizes {sorted(sizes)}: time them apart")
    s = sizes.pop()
    x = np.random.default_rng(0).standard_normal((1, 3, s, s)).astype(np.float32)
    timing = interleaved_latency(models, x, threads=threads, rounds=rounds, runs_per_round=runs)
    rows = []
    for rate, path in models.items():
        info = manifests[rate].get("info", {})
        summ = evaluate_file(path, data, list_name, threads=threads)
        res = summ["results"][summ["modes"][0]]
        rows.append({"rate": rate, "params": info.get("params"), "macs": info.get("macs"),
                     "onnx_mb": round(path.stat().st_size / 1e6, 2),
                     "nme_afw_helen": round(selection_score(res, "nme_ion", ("afw", "helen")), 3),
                     "nme_ytf": round(selection_score(res, "nme_ion", ("ytf",)), 3),
                     "median_ms": round(timing[rate].median_ms, 3), "min_ms": round(timing[rate].min_ms, 3)})
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| pruning rate % | parameters | MACs | ONNX MB | AFW+HELEN ION NME % | YTF | 1-thread median ms "
            "| min ms |\n|---|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {r['rate']} | {r['params']:,} | {r['macs'] / 1e6:.1f} M | {r['onnx_mb']} | "
                   f"{r['nme_afw_helen']} | {r['nme_ytf']} | {r['median_ms']} | {r['min_ms']} |\n" for r in rows)
    return head + body


def plot(rows: list[dict], path: Path) -> None:
    """NME against median ms; a rate sweep (numeric labels) is joined and labelled ``N%``, other
    rows are numbered on the plot and named in a key beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = all(str(r["rate"]).replace(".", "", 1).isdigit() for r in rows)
    fig, ax = plt.subplots(figsize=(5, 3.5) if numeric else (8.5, 3.8))
    xs, ys = [float(r["median_ms"]) for r in rows], [float(r["nme_afw_helen"]) for r in rows]
    ax.plot(xs, ys, "-o" if numeric else "o")
    for i, (r, x, y) in enumerate(zip(rows, xs, ys)):
        ax.annotate(f"{r['rate']}%" if numeric else str(i + 1), (x, y), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("onnxruntime 1-thread median ms")
    ax.set_ylabel("AFW+HELEN ION NME %")
    ax.grid(alpha=0.3)
    if not numeric:
        key = "\n".join(f"{i + 1}: {r['rate']}" for i, r in enumerate(rows))
        fig.text(0.6, 0.5, key, va="center", fontsize=8)
        fig.tight_layout(rect=(0, 0, 0.58, 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", help="RATE=PATH.onnx (repeat)")
    ap.add_argument("--data", help="face68 pack folder")
    ap.add_argument("--list", default="val.txt")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--runs", type=int, default=20, help="timed forwards of each model per round")
    ap.add_argument("--out", default="", help="write OUT.md, OUT.csv and OUT.png")
    ap.add_argument("--replot", default="", help="only draw OUT.png again from this CSV (no measuring)")
    args = ap.parse_args()
    if args.replot:
        if not args.out:
            raise SystemExit("--replot needs --out")
        with open(args.replot, newline="") as f:
            plot(list(csv.DictReader(f)), Path(args.out).with_suffix(".png"))
        return
    if not args.model or not args.data:
        raise SystemExit("--model and --data are required (or --replot CSV --out OUT)")
    rows = table_rows(parse_models(args.model), args.data, args.list, args.threads, args.rounds, args.runs)
    md = markdown(rows)
    print(md, end="")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        load = f"load average {[round(v, 2) for v in os.getloadavg()]}"
        out.with_suffix(".md").write_text(md + f"\n_`benchmarks/rate_table.py`, {load} at the end._\n")
        with out.with_suffix(".csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)
        plot(rows, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
