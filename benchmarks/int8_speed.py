"""Forward time of every int8 model against its float parent, in interleaved rounds.

    .venv/bin/python benchmarks/int8_speed.py [--models-dir DIR] [--threads 1] [--rounds 30] [--runs 20]
        [--json OUT.json]

Pairs: each model of the folder whose manifest names a parent (``info.quantization.parent``,
written by ``python -m training quantize``) that is in the folder too. Each pair is timed by
``training.evaluation.latency.interleaved_latency``, the helper the quantize command's gate uses: both
models take turns, a burst of ``--runs`` forwards each, ``--rounds`` times, the order
reversed every other round, so load from other work hits both alike. Batch 1, onnxruntime
forward only (``LandmarkModel.forward``), a fixed seeded input (convolution time does not
depend on the pixel values). Prints a Markdown table: medians, minima (the compute time
with no other work in the way: on a loaded machine a longer forward is interrupted more
often, so medians there overstate the gap), the speed-up of the medians and the rounds
each model won.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def int8_pairs(models_dir: Path) -> list[tuple[Path, Path]]:
    """(float parent, int8 model) for each model whose manifest names a parent present in
    ``models_dir``."""
    from kpdesk.inference.catalog import scan_models

    entries = {e.name: e for e in scan_models(models_dir, validate=False) if e.ok}
    pairs = []
    for e in entries.values():
        parent = (e.manifest.info.get("quantization") or {}).get("parent")
        if parent in entries:
            pairs.append((entries[parent].onnx_path, e.onnx_path))
    return pairs


def main(argv: list[str] | None = None) -> int:
    from kpdesk.inference.catalog import default_models_dir
    from kpdesk.vision.manifest import Manifest
    from training.evaluation.latency import interleaved_latency

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", default="", help="default: $KPDESK_MODELS or the repository's models/")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--runs", type=int, default=20, help="timed forwards per model per round")
    ap.add_argument("--json", default="", help="also write the figures to this file")
    args = ap.parse_args(argv)
    models_dir = Path(args.models_dir).expanduser() if args.models_dir else default_models_dir()
    pairs = int8_pairs(models_dir)
    if not pairs:
        print(f"error: {models_dir}: no int8 model with its float parent (make one with python -m training "
              "quantize)", file=sys.stderr)
        return 1
    rows, out = [], []
    for fp, qp in pairs:
        s = Manifest.load(fp.with_suffix(".json")).input_size
        x = np.random.default_rng(0).standard_normal((1, 3, s, s)).astype(np.float32)
        t = interleaved_latency({fp.stem: fp, qp.stem: qp}, x, threads=args.threads, rounds=args.rounds,
                                runs_per_round=args.runs)
        f, q = t[fp.stem], t[qp.stem]
        out.append({"float": fp.stem, "int8": qp.stem, "float_ms": f.to_dict(), "int8_ms": q.to_dict(),
                    "speedup": f.median_ms / q.median_ms})
        rows.append(f"| `{qp.stem}` | `{fp.stem}` | {f.median_ms:.3f} / {f.min_ms:.3f} | {q.median_ms:.3f} / "
                    f"{q.min_ms:.3f} | x{f.median_ms / q.median_ms:.2f} | {q.wins} / {f.wins} |")
    print(f"{args.threads} thread(s), {args.rounds} interleaved rounds x {args.runs} runs, load average "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| int8 | float | float ms (median / min) | int8 ms (median / min) | speed-up (medians) | rounds won int8 / "
          "float |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "rounds": args.rounds, "runs": args.runs,
                                               "load_avg": os.getloadavg(), "pairs": out}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
