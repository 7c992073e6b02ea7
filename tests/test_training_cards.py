"""The README's bench tables are rewritten from one bench result, between their markers."""

from __future__ import annotations

import json

import pytest

from training.evaluation.cards import readme_tables, replace_between_markers, update_readme


def _result() -> dict:
    acc = {"nme_ion": 5.0, "by_source": {"afw+helen": {"nme_ion": 4.2, "n": 143}, "ytf": {"nme_ion": 5.3, "n": 770}}}
    rob = {k: {"fusion": {"nme_ion": v}} for k, v in
           {"clean": 5.0, "occlusion20": 5.5, "occlusion40": 6.0, "rotate30": 5.6, "rotate45": 7.0, "blur": 5.4,
            "lowlight": 5.2}.items()} | {"n": 913}
    return {"meta": {"date": "2026-11-25", "load_avg": [1.0], "command": "python -m training bench"},
            "models": [{"name": "student", "ok": True, "arch": "mobilenetv2", "decode": "fusion",
                        "split": "face68/val.txt", "accuracy": {"fusion": acc}, "params": 2.7e6, "macs": 110e6,
                        "file_size_bytes": 10.8e6, "latency": {"threads_1": {"median_ms": 1.8}},
                        "robustness": rob},
                       {"name": "broken", "ok": False}]}


def test_tables_carry_the_judged_columns_and_the_occlusion_ratio():
    t = readme_tables(_result())
    row = t["models"].splitlines()[2]
    assert "`student`" in row and "| 4.20 |" in row and "| 5.30 |" in row and "1.80" in row
    assert "broken" not in t["models"]
    assert t["robustness"].splitlines()[2].endswith("| 1.20x |")


def test_update_readme_replaces_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:models -->\nold\n<!-- /bench:models -->\nmiddle\n"
                      "<!-- bench:robustness -->\nold\n<!-- /bench:robustness -->\nend\n")
    js = tmp_path / "bench.json"
    js.write_text(json.dumps(_result()))
    text = update_readme(js, readme).read_text()
    assert text.startswith("intro\n") and "\nmiddle\n" in text and text.endswith("end\n")
    assert "old" not in text and text.count("`student`") == 2 and "2026-11-25" in text
    with pytest.raises(ValueError, match="markers"):
        replace_between_markers("no markers", "models", "x")


def test_int8_models_are_marked_in_the_readme_table_and_carry_a_quantization_line():
    from training.evaluation.cards import quantization_lines

    res = _result()
    int8 = {**res["models"][0], "name": "student-int8", "weights_dtype": "int8 (QDQ: int8 weights per channel)"}
    res["models"].insert(1, int8)
    rows = readme_tables(res)["models"].splitlines()
    assert "| `student` | mobilenetv2 |" in rows[2] and "| `student-int8` | mobilenetv2 int8 |" in rows[3]
    assert quantization_lines(None) == [] and quantization_lines({}) == []
    q = {"parent": "student", "calibration": {"faces": 256, "data": "face68", "list": "train.txt",
                                              "sources": ["afw", "helen"]},
         "val": {"n": 143, "nme_ion_int8": 4.1207, "nme_ion_float": 4.1102},
         "latency_1thread": {"int8": {"median_ms": 1.3, "min_ms": 1.2}, "float": {"median_ms": 3.1, "min_ms": 2.7},
                             "speedup": 2.38},
         "size_bytes": {"int8": 3.11e6, "float": 10.83e6}, "excluded_nodes": ["/conv0"], "command": "CMD"}
    (line,) = quantization_lines(q)
    assert "int8 copy of `student`" in line and "256 training crops (face68/train.txt, afw+helen)" in line
    assert "4.121% against 4.110%" in line and "x2.38" in line and "`/conv0`" in line and "`CMD`" in line
