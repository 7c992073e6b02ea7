"""What an int8 landmark model's 1-thread latency depends on: kept channel counts, their
alignment, the float first convolution and the input size.

    .venv/bin/python benchmarks/int8_channel_alignment.py [--student models/student.onnx]
        [--sizes 128 96] [--rounds 20] [--runs 20] [--json OUT.json]

From the student (any shipped 68-point MobileNetV2 ONNX, rebuilt in PyTorch), structural
variants are cut with the project's pruning code (``training.prune.plan``; filters ranked by
L1 norm: the weights do not matter for timing), the heatmap head left whole as shipped:

- ``p50``: half of the filters of every layer but the heatmap head's (12 of 24, 8 of 16, ... as session 9's
  ``student-0.5x``);
- ``p50m16``: the same with each kept count rounded to a multiple of 16 (``prune.channel_multiple``);
- ``p60``: 60% pruned, counts left as they fall (13, 26, 38, ...); ``p60m8``: rounded to 8.

Each is exported, quantized to int8 QDQ (``training.evaluation.quantize.quantize_graph``,
activation ranges from random inputs: ranges do not change the kernels), and with the first
convolution left in float (``-f``). Timing runs in a fresh process (PyTorch's spinning
threads would slow onnxruntime in this one): onnxruntime sessions as the app builds them
(1 intra-op thread), batch 1, interleaved rounds (``training.evaluation.latency.interleave``).
Prints median and minimum ms per variant and input size.

Figures measured on this machine: docs/results/chain_session11.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VARIANTS = {"p50": (0.5, 1), "p50m16": (0.5, 16), "p60": (0.6, 1), "p60m8": (0.6, 8)}


def build(student: Path, out: Path, size: int) -> list[str]:
    """Write each variant's float and int8 graphs (``NAME.onnx``, ``NAME-int8.onnx``, ``NAME-int8-f.onnx``)."""
    import numpy as np
    import torch
    import torch_pruning as tp

    from training.evaluation.quantize import quantize_graph
    from training.jobs.onnx_export import export_model
    from training.jobs.onnx_import import import_onnx
    from training.prune.plan import build_graph, plan_layers, prune_layer

    torch.set_num_threads(2)
    calib = np.random.default_rng(0).standard_normal((32, 3, size, size)).astype(np.float32)
    names = []
    for name, (alpha, multiple) in VARIANTS.items():
        imp = import_onnx(student)
        m = imp.model.eval()
        dg = build_graph(m, size)
        named = dict(m.named_modules())
        for ly in plan_layers(m, dg, size, ("hm_head",)):
            prune_layer(dg, named[ly.root], tp.importance.MagnitudeImportance(p=1), alpha, multiple)
        m.hm_head.size = size // 8  # heatmaps at stride 8 as a model trained at this size has them (12 px at 96)
        f32 = out / f"{name}-{size}.onnx"
        export_model(m, imp.manifest.schema, f32, input_size=size, heatmap_size=size // 8, sigma=imp.manifest.sigma,
                     decode=imp.manifest.decode, arch=imp.manifest.arch)
        quantize_graph(f32, out / f"{name}-{size}-int8.onnx", calib, imp.manifest.input_name)
        quantize_graph(f32, out / f"{name}-{size}-int8-f.onnx", calib, imp.manifest.input_name, exclude=["first"])
        names += [f"{name}-{size}-int8", f"{name}-{size}-int8-f"]
        print(f"{name} at {size} px: {sum(p.numel() for p in m.parameters()):,} parameters", flush=True)
    return names


def time_graphs(folder: Path, names: list[str], size: int, rounds: int, runs: int) -> dict[str, dict]:
    """Interleaved 1-thread forward times of ``folder/NAME.onnx`` (raw graphs, input ``input``)."""
    import numpy as np
    import onnxruntime as ort

    from training.evaluation.latency import interleave

    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    forwards = {}
    for n in names:
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = 1, 1, 3
        sess = ort.InferenceSession(str(folder / f"{n}.onnx"), so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}
        forwards[n] = lambda s=sess, f=feed: s.run(None, f)
    return {n: t.to_dict() for n, t in interleave(forwards, threads=1, rounds=rounds, runs_per_round=runs).items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", type=Path, default=REPO / "models" / "student.onnx")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 96])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", default="")
    ap.add_argument("--time-only", nargs="+", help=argparse.SUPPRESS)  # FOLDER SIZE NAME...: the timing child
    args = ap.parse_args(argv)
    if args.time_only:
        folder, size, *names = args.time_only
        print(json.dumps(time_graphs(Path(folder), names, int(size), args.rounds, args.runs)))
        return 0
    if not args.student.is_file():
        print(f"error: {args.student}: no such model", file=sys.stderr)
        return 2
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="kpdesk-align-") as tmp:
        for size in args.sizes:
            names = build(args.student, Path(tmp), size)
            child = subprocess.run([sys.executable, __file__, "--rounds", str(args.rounds), "--runs", str(args.runs),
                                    "--time-only", tmp, str(size), *names], capture_output=True, text=True, check=True)
            results |= json.loads(child.stdout.strip().splitlines()[-1])
    print("\n| variant | median ms | min ms |\n|---|---|---|")
    for n, t in results.items():
        print(f"| {n} | {t['median_ms']:.3f} | {t['min_ms']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
