"""Model cards: the measured figures of one bench run written into every shipped manifest
(``info.bench``) and into ``models/README.md``, so card and benchmark never disagree."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kpdesk.vision.manifest import Manifest


def _f(v: Any, fmt: str = ".2f") -> str:
    return "–" if v is None else format(v, fmt)


def _lat(rec: dict, key: str) -> str:
    lat = rec.get("latency", {}).get(key, {})
    return f"{_f(lat.get('median_ms'))} / {_f(lat.get('p95_ms'))}" if lat else "–"


def card_section(man: Manifest, rec: dict, meta: dict) -> str:
    info = man.info
    acc = rec.get("accuracy", {}).get(rec.get("decode", man.decode), {})
    by = acc.get("by_source", {}) or {}
    rc = info.get("run_config", {})
    tr = rc.get("train", {})
    lines = [
        f"### {man.name}",
        "",
        f"- **Network**: {man.arch}, {man.schema.num_points} points ({man.schema.name}), input {man.input_size} px, "
        f"heatmaps {man.heatmap_size or '–'} px ({rc.get('model', {}).get('hm_source', '–')} head), "
        f"default decoding `{man.decode}`.",
        f"- **Data**: `{info.get('data', {}).get('root_name', '?')}` train split "
        f"({info.get('data', {}).get('train_samples', '?')} faces), selected on its val split "
        f"({info.get('data', {}).get('val_samples', '?')} faces).",
        f"- **Licence**: {info.get('licence', '')}",
        f"- **Training**: `{info.get('training_command', '')}`; {info.get('epochs_run', '?')} epochs "
        f"(best epoch {info.get('best_epoch', '?')}), optimizer {tr.get('optimizer', '?')} lr {tr.get('lr', '?')}, "
        f"batch {tr.get('batch_size', '?')}, wall time {_f((info.get('wall_time_s') or 0) / 60, '.1f')} min on "
        f"2 CPU cores. {info.get('training_note', '')}",
        f"- **Weights**: {info.get('weights_dtype', 'float32')}; {rec.get('params', 0) / 1e6:.3f} M parameters, "
        f"{rec.get('macs', 0) / 1e6:.1f} M MACs, ONNX file {rec.get('file_size_bytes', 0) / 1e6:.2f} MB.",
        f"- **Validation** ({acc.get('n', '?')} faces, bench run of {meta.get('date', '?')}): "
        f"ION NME {_f(acc.get('nme_ion'))}%, IPN NME {_f(acc.get('nme_ipn'))}%, "
        f"FR@0.08 {_f(acc.get('fr08_ion'))}%, FR@0.10 {_f(acc.get('fr10_ion'))}%, "
        f"AUC@0.08 {_f(acc.get('auc08_ion'), '.3f')}, AUC@0.10 {_f(acc.get('auc10_ion'), '.3f')}.",
        "- **Per source** (ION NME): " + ", ".join(f"{k} {_f(v.get('nme_ion'))}% (n={v.get('n')})"
                                               for k, v in by.items()),
        f"- **onnxruntime latency**, batch 1, median / p95 ms: 1 thread {_lat(rec, 'threads_1')}, "
        f"all threads {_lat(rec, 'threads_all')}.",
        "",
    ]
    return "\n".join(lines)


def _command(cmd: str) -> str:
    """``.../training/__main__.py bench ...`` (sys.argv) -> ``python -m training bench ...``."""
    parts = cmd.split()
    if parts and parts[0].endswith("__main__.py"):
        parts = ["python", "-m", "training", *parts[1:]]
    return " ".join(parts)


def update_cards(bench_json: Path, models_dir: Path) -> Path:
    result = json.loads(bench_json.read_text())
    meta = dict(result["meta"])
    meta["command"] = _command(meta.get("command", "python -m training bench"))
    sections = []
    for rec in result["models"]:
        if not rec.get("ok") or not str(rec.get("path", "")).endswith(".onnx"):
            continue
        onnx_path = models_dir / f"{rec['name']}.onnx"
        if not onnx_path.is_file():
            continue
        mpath = onnx_path.with_suffix(".json")
        man = Manifest.load(mpath)
        acc = rec.get("accuracy", {}).get(rec.get("decode", man.decode), {})
        bench = {
            "date": meta.get("date"), "command": meta.get("command"),
            "val": {k: v for k, v in acc.items() if k != "per_point_nme"},
            "latency_ms": rec.get("latency"), "file_size_bytes": rec.get("file_size_bytes"),
            "robustness_nme_ion": {k: v.get(rec.get("decode"), {}).get("nme_ion")
                                   for k, v in rec.get("robustness", {}).items() if isinstance(v, dict) and k != "n"},
            "jitter": rec.get("jitter"),
        }
        man = man.with_info(bench=bench)
        tmp = mpath.with_name(f".{mpath.name}.tmp")
        man.save(tmp)
        Manifest.load(tmp)
        os.replace(tmp, mpath)
        sections.append(card_section(man, rec, meta))
    readme = models_dir / "README.md"
    head = readme.read_text().split("<!-- cards -->")[0] if readme.is_file() else "# Models\n\n"
    readme.write_text(head.rstrip() + "\n\n<!-- cards -->\n\n## Model cards\n\n"
                      f"Figures from `{meta.get('command', 'python -m training bench')}` "
                      f"({meta.get('date')}, load average {meta.get('load_avg')}).\n\n" + "\n".join(sections))
    return readme
