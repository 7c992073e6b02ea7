"""What two changes to a pruned model would save in forward time, before training either: its
heatmap head's 3x3 convolution replaced by a depthwise 3x3 + pointwise 1x1 pair, and a smaller
input (``--sizes``). Untrained forms: this measures time, not accuracy; float32 and int8.

    .venv/bin/python benchmarks/separable_head_latency.py --model models/student-0.5x.onnx --sizes 112 96

The model (a shipped .onnx or a training checkpoint) is rebuilt in PyTorch
(``training.jobs.checkpoints.model_from_checkpoint``), both forms are exported as the project
exports (opset 17) and quantized by ``training quantize``'s own graph step (QDQ, per-channel
int8 weights; random calibration crops, which set the ranges but not the time), then timed on
1 thread in interleaved rounds (``training.evaluation.latency.interleave``: a burst of each model
in turn, so load hits all alike).
Prints parameters, MACs and median / min ms of the four graphs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def separable(model) -> None:
    """Replace ``hm_head.conv``'s 3x3 convolution by depthwise 3x3 + pointwise 1x1 (in place)."""
    from torch import nn

    conv = model.hm_head.conv[0]
    c_in, c_out = conv.in_channels, conv.out_channels
    model.hm_head.conv[0] = nn.Sequential(nn.Conv2d(c_in, c_in, 3, 1, 1, groups=c_in, bias=False),
                                          nn.Conv2d(c_in, c_out, 1, bias=False))


def export(model, size: int, path: Path) -> None:
    import torch

    from training.jobs.onnx_export import torch_to_onnx
    from training.nets.networks import ExportWrapper

    torch_to_onnx(ExportWrapper(model).eval(), torch.zeros(1, 3, size, size), path, ["coords", "heatmaps"])


def sessions(paths: dict[str, tuple[Path, int]]) -> dict:
    """label -> a 1-thread onnxruntime forward of that graph on a random input of its size."""
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    out = {}
    for label, (p, size) in paths.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.add_session_config_entry("session.set_denormal_as_zero", "1")
        sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        feed = {"input": rng.random((1, 3, size, size), dtype=np.float32)}
        out[label] = lambda sess=sess, feed=feed: sess.run(None, feed)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a shipped .onnx (with its manifest) or a training checkpoint")
    ap.add_argument("--sizes", type=int, nargs="*", default=[], help="input sizes to time besides the model's own")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()

    import torch

    from training.evaluation.latency import interleave
    from training.evaluation.quantize import quantize_graph
    from training.jobs.checkpoints import model_from_checkpoint
    from training.nets.networks import count_macs

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows, paths = {}, {}
    with tempfile.TemporaryDirectory(prefix="kpdesk-sephead-") as tmp:
        _, cfg, _ = model_from_checkpoint(args.model)
        own = cfg.model.input_size
        forms = [("as shipped", own, False), ("separable head", own, True)]
        forms += [(f"as shipped at {s} px", s, False) for s in args.sizes]
        for form, size, sep in forms:
            model, _, _ = model_from_checkpoint(args.model)
            model.eval()
            if sep:
                separable(model)
            params, macs = sum(p.numel() for p in model.parameters()), count_macs(model, size)
            f32 = Path(tmp) / f"{len(paths)}.onnx"
            export(model, size, f32)
            q = Path(tmp) / f"{len(paths)}-int8.onnx"
            quantize_graph(f32, q, rng.random((32, 3, size, size), dtype=np.float32), "input")
            for kind, p in (("float32", f32), ("int8", q)):
                paths[f"{form}, {kind}"] = (p, size)
                rows[f"{form}, {kind}"] = (params, macs, p.stat().st_size)
        times = interleave(sessions(paths), threads=1, rounds=args.rounds, runs_per_round=args.runs)
    print(f"{args.model}: 1 thread, {args.rounds} interleaved rounds x {args.runs} forwards")
    print("| graph | params | MACs | ONNX MB | median ms | min ms |\n|---|---|---|---|---|---|")
    for label, (params, macs, size_b) in rows.items():
        t = times[label]
        print(f"| {label} | {params:,} | {macs / 1e6:.1f} M | {size_b / 1e6:.2f} | {t.median_ms:.3f} "
              f"| {t.min_ms:.3f} |")


if __name__ == "__main__":
    main()
