"""Which of a model's first blocks run faster left in float inside its int8 copy.

    .venv/bin/python benchmarks/int8_float_blocks.py [--model models/student-0.25x.onnx]
        [--blocks 4] [--rounds 60] [--runs 30] [--json OUT.json]

onnxruntime's int8 convolutions are not faster than its float ones everywhere: a narrow
depthwise convolution at high resolution can run slower in int8 (the quantize / dequantize
pairs around it included). This quantizes the float model (int8 QDQ as ``python -m training
quantize`` does, ``training.evaluation.quantize.quantize_graph``) several times: with only the
first convolution in float (``first``), then also with ``features.1``, ``features.1-2``, ...
(``--blocks`` of them) in float (``--exclude first /net/backbone/features.1/ ...``), and times
every copy and the float model in the same interleaved rounds (1 onnxruntime thread, batch 1,
``training.evaluation.latency``), in a fresh process. Activation ranges come from random inputs:
ranges do not change the kernels, so the timing holds; the accuracy of the copy chosen is what
``training quantize``'s gate then measures on real faces.

Figures measured on this machine: docs/results/chain_session20.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

if TYPE_CHECKING:
    from kpdesk.vision.manifest import Manifest

PREFIX = "/net/backbone/features.{}/"


def variants(blocks: int) -> dict[str, list[str]]:
    """Label -> ``--exclude`` values: ``first``, then blocks 1..k in float as well."""
    out = {"int8, first conv float": ["first"]}
    for k in range(1, blocks + 1):
        label = "int8, first conv + features.1 float" if k == 1 else f"int8, first conv + features.1-{k} float"
        out[label] = ["first"] + [PREFIX.format(i) for i in range(1, k + 1)]
    return out


def build(model: Path, man: Manifest, out: Path, blocks: int) -> dict[str, dict]:
    """Write each int8 copy of ``model`` (with its manifest ``man`` beside it) into ``out``; returns label -> info."""
    import numpy as np

    from training.evaluation.quantize import quantize_graph

    s = man.input_size
    calib = np.random.default_rng(0).standard_normal((32, 3, s, s)).astype(np.float32)
    info = {"float": {"path": str(model), "excluded_nodes": [], "bytes": model.stat().st_size}}
    for i, (label, exclude) in enumerate(variants(blocks).items()):
        dst = out / f"v{i}.onnx"
        q = quantize_graph(model, dst, calib, man.input_name, exclude=exclude)
        man.stamped(dst).save(dst.with_suffix(".json"))  # loaded as the app loads a model
        info[label] = {"path": str(dst), "exclude": exclude, "excluded_nodes": q["excluded_nodes"],
                       "bytes": dst.stat().st_size}
    return info


def time_all(info: dict[str, dict], size: int, rounds: int, runs: int) -> dict[str, dict]:
    import numpy as np

    from training.evaluation.latency import interleaved_latency

    x = np.random.default_rng(1).random((1, 3, size, size), dtype=np.float32)
    t = interleaved_latency({k: Path(v["path"]) for k, v in info.items()}, x, threads=1, rounds=rounds,
                            runs_per_round=runs)
    return {k: v.to_dict() for k, v in t.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(REPO / "models" / "student-0.25x.onnx"), help="a float NAME.onnx")
    p.add_argument("--blocks", type=int, default=4, help="time features.1 up to features.N left in float")
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--runs", type=int, default=30, help="timed forwards per model per round")
    p.add_argument("--json", default="", help="also write the figures to this file")
    p.add_argument("--time-only", default="", help=argparse.SUPPRESS)  # the child process: a build's info JSON
    a = p.parse_args(argv)
    if a.blocks < 0 or a.rounds < 1 or a.runs < 1:
        p.error("--blocks >= 0, --rounds >= 1, --runs >= 1")
    if a.time_only:
        job = json.loads(Path(a.time_only).read_text())
        print(json.dumps(time_all(job["info"], job["size"], a.rounds, a.runs)))
        return 0
    model = Path(a.model)
    if not model.is_file():
        p.error(f"--model {model}: no such file")
    from kpdesk.inference.model import LandmarkModel

    man = LandmarkModel.load(model, threads=1).manifest
    size = man.input_size
    with tempfile.TemporaryDirectory(prefix="kpdesk-f32blocks-") as tmp:
        info = build(model, man, Path(tmp), a.blocks)
        job = Path(tmp) / "job.json"
        job.write_text(json.dumps({"info": info, "size": size}))
        # timing in a fresh process: no quantizer or PyTorch state beside onnxruntime
        r = subprocess.run([sys.executable, __file__, "--time-only", str(job), "--rounds", str(a.rounds),
                            "--runs", str(a.runs)], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "timing failed", file=sys.stderr)
            return 1
        timing = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"{model.name}, {size} px, 1 thread, {a.rounds} interleaved rounds x {a.runs} runs")
    print("| copy | nodes left float | MB | median ms | min ms | rounds won |")
    print("|---|---|---|---|---|---|")
    for k, v in info.items():
        t = timing[k]
        print(f"| {k} | {len(v['excluded_nodes'])} | {v['bytes'] / 1e6:.2f} | {t['median_ms']:.3f} | "
              f"{t['min_ms']:.3f} | {t['wins']} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"model": str(model), "size": size, "info": info, "timing": timing},
                                           indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
