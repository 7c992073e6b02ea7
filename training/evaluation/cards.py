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


def _measured_lines(man: Manifest, rec: dict, meta: dict) -> list[str]:
    """The bench's figures: validation, per source, latency."""
    acc = rec.get("accuracy", {}).get(rec.get("decode", man.decode), {})
    by = acc.get("by_source", {}) or {}
    return [
        f"- **Validation** ({acc.get('n', '?')} faces, bench run of {meta.get('date', '?')}): "
        f"ION NME {_f(acc.get('nme_ion'))}%, IPN NME {_f(acc.get('nme_ipn'))}%, "
        f"FR@0.08 {_f(acc.get('fr08_ion'))}%, FR@0.10 {_f(acc.get('fr10_ion'))}%, "
        f"AUC@0.08 {_f(acc.get('auc08_ion'), '.3f')}, AUC@0.10 {_f(acc.get('auc10_ion'), '.3f')}.",
        "- **Per source** (ION NME): " + ", ".join(f"{k} {_f(v.get('nme_ion'))}% (n={v.get('n')})"
                                               for k, v in by.items()),
        f"- **onnxruntime latency**, batch 1, median / p95 ms: 1 thread {_lat(rec, 'threads_1')}, "
        f"all threads {_lat(rec, 'threads_all')}.",
    ]


def imported_card_section(man: Manifest, rec: dict, meta: dict) -> str:
    """The card of a model installed by ``kpdesk models import`` (trained elsewhere)."""
    info = man.info
    opt = info.get("import_options", {})
    cal = info.get("calibration")
    crop = (f"side {man.crop_scale:.3f} x the landmark box, centre offset ({man.crop_offset[0]:+.3f}, "
            f"{man.crop_offset[1]:+.3f}) box sides")
    how = (f"fitted on {cal.get('faces')} faces of `{cal.get('data')}` {cal.get('list', '')} "
           f"(ION NME {_f(cal.get('nme_ion'))}% there)" if cal else "given at import, not calibrated")
    lines = [
        f"### {man.name}",
        "",
        f"- **Imported** from `{info.get('imported_from', '?')}` (sha256 {info.get('imported_sha256', '?')}) "
        f"{('from ' + info['origin'] + ' ') if info.get('origin') else ''}by `{info.get('import_command', '')}`; "
        "trained elsewhere, on data this repository does not know.",
        f"- **Input**: {man.input_size} px {opt.get('layout', man.input_layout).upper()} "
        f"{man.color.upper()}, (pixel - {opt.get('mean')}) / {opt.get('std')}; **output** {opt.get('output')} "
        f"`{opt.get('output_name')}`, {man.schema.num_points} points ({man.schema.name}).",
        f"- **Crop**: {crop}, {how}.",
        f"- **Licence**: {info.get('licence', '')}",
        f"- **Size**: ONNX file {rec.get('file_size_bytes', 0) / 1e6:.2f} MB"
        + (f", {rec.get('params', 0) / 1e6:.3f} M parameters" if rec.get("params") else "") + ".",
        *_measured_lines(man, rec, meta),
        "",
    ]
    return "\n".join(lines)


def card_section(man: Manifest, rec: dict, meta: dict) -> str:
    if man.info.get("source") == "imported":
        return imported_card_section(man, rec, meta)
    info = man.info
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
        *quantization_lines(info.get("quantization")),
        f"- **Weights**: {info.get('weights_dtype', 'float32')}; {rec.get('params', 0) / 1e6:.3f} M parameters, "
        f"{rec.get('macs', 0) / 1e6:.1f} M MACs, ONNX file {rec.get('file_size_bytes', 0) / 1e6:.2f} MB.",
        *_measured_lines(man, rec, meta),
        "",
    ]
    return "\n".join(lines)


def quantization_lines(q: dict | None) -> list[str]:
    """The card line of an int8 model made by ``python -m training quantize`` (none for a float model)."""
    if not q:
        return []
    cal = q.get("calibration", {})
    val = q.get("val", {})
    lat = q.get("latency_1thread", {})
    size = q.get("size_bytes", {})
    src = "+".join(cal.get("sources") or []) or "all"
    kept = ", ".join(f"`{n}`" for n in q.get("excluded_nodes") or []) or "none"
    return [
        f"- **Quantization**: int8 copy of `{q.get('parent', '?')}` by onnxruntime {q.get('onnxruntime', '?')} static "
        f"quantization ({q.get('format', 'QDQ')}: weights {q.get('weights', '?')}, activations "
        f"{q.get('activations', '?')}), activation ranges by {q.get('calibration_method', '?')} on "
        f"{cal.get('faces', '?')} training crops ({cal.get('data', '?')}/{cal.get('list', '?')}, {src}); "
        f"left in float: {kept}. At quantization time ({q.get('date', '?')}): {src} val ({val.get('n', '?')} faces) "
        f"ION NME {_f(val.get('nme_ion_int8'), '.3f')}% against {_f(val.get('nme_ion_float'), '.3f')}% float; "
        f"1 thread, interleaved, median {_f(lat.get('int8', {}).get('median_ms'), '.3f')} ms against "
        f"{_f(lat.get('float', {}).get('median_ms'), '.3f')} ms (x{_f(lat.get('speedup'))}; minimum "
        f"{_f(lat.get('int8', {}).get('min_ms'), '.3f')} against {_f(lat.get('float', {}).get('min_ms'), '.3f')} ms); "
        f"file "
        f"{_f((size.get('int8') or 0) / 1e6)} MB against {_f((size.get('float') or 0) / 1e6)} MB. "
        f"Made by `{q.get('command') or 'python -m training quantize'}`.",
    ]


def _command(cmd: str) -> str:
    """``.../training/__main__.py bench ...`` (sys.argv) -> ``python -m training bench ...``."""
    parts = cmd.split()
    if parts and parts[0].endswith("__main__.py"):
        parts = ["python", "-m", "training", *parts[1:]]
    return " ".join(parts)


ROBUST_COLUMNS = (("clean", "clean"), ("occlusion20", "occl. 20%"), ("occlusion40", "occl. 40%"),
                  ("rotate30", "rot. 30°"), ("rotate45", "rot. 45°"), ("blur", "blur"), ("lowlight", "low light"))


def readme_tables(result: dict) -> dict[str, str]:
    """The top-level README's model and robustness tables (Markdown) from one bench result."""
    models = [r for r in result["models"] if r.get("ok")]
    rows = ["| model | arch | val ION NME % (all) | AFW+HELEN | YTF | params | MACs | ONNX | onnxruntime 1 thread, "
            "median ms |", "|---|---|---|---|---|---|---|---|---|"]
    for r in models:
        acc = r.get("accuracy", {}).get(r.get("decode"), {})
        by = acc.get("by_source", {}) or {}
        split = (r.get("split") or "").split("/")[0]
        arch = r.get("arch", "?") + (" int8" if str(r.get("weights_dtype", "")).startswith("int8") else "")
        rows.append(f"| `{r['name']}` | {arch} | {_f(acc.get('nme_ion'))} ({split}) | "
                    f"{_f(by.get('afw+helen', {}).get('nme_ion'))} | {_f(by.get('ytf', {}).get('nme_ion'))} | "
                    f"{r.get('params', 0) / 1e6:.3f} M | {r.get('macs', 0) / 1e6:.1f} M | "
                    f"{r.get('file_size_bytes', 0) / 1e6:.2f} MB | "
                    f"{_f(r.get('latency', {}).get('threads_1', {}).get('median_ms'))} |")
    rob = [r for r in models if isinstance(r.get("robustness"), dict) and "clean" in r["robustness"]]
    rrows = ["| model | " + " | ".join(h for _, h in ROBUST_COLUMNS) + " | occl. 40% / clean |",
             "|---" * (len(ROBUST_COLUMNS) + 2) + "|"]
    for r in rob:
        vals = {k: r["robustness"].get(k, {}).get(r["decode"], {}).get("nme_ion") for k, _ in ROBUST_COLUMNS}
        ratio = vals["occlusion40"] / vals["clean"] if vals.get("clean") and vals.get("occlusion40") else None
        rrows.append(f"| `{r['name']}` | " + " | ".join(_f(vals[k]) for k, _ in ROBUST_COLUMNS)
                     + f" | {_f(ratio)}x |")
    return {"models": "\n".join(rows), "robustness": "\n".join(rrows) if rob else ""}


def replace_between_markers(text: str, key: str, body: str) -> str:
    """Replace what stands between ``<!-- bench:KEY -->`` and ``<!-- /bench:KEY -->``."""
    start, end = f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"
    if start not in text or end not in text:
        raise ValueError(f"README has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def update_readme(bench_json: Path, readme: Path) -> Path:
    """Rewrite the README's bench tables (between their markers) from ``bench_json``."""
    result = json.loads(bench_json.read_text())
    text = readme.read_text()
    meta = result["meta"]
    for key, body in readme_tables(result).items():
        if body:
            note = (f"\n_Measured by `{_command(meta.get('command', 'python -m training bench'))}` on "
                    f"{meta.get('date')} (load average {meta.get('load_avg')})._")
            text = replace_between_markers(text, key, body + "\n" + note)
    tmp = readme.with_name(f".{readme.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, readme)
    return readme


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
