"""``python -m training train`` as the GUI runs it (a subprocess): the JSON event stream,
the exported model, evaluation of the result, exit codes for divergence (3) and config
errors (2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures import make_face68, tiny_config

from training.cli import main as training_main

pytestmark = pytest.mark.usefixtures("no_signal_handlers")

REPO = Path(__file__).resolve().parents[1]


def run_training(*argv: str, timeout: float = 120) -> tuple[int, list[dict], str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    p = subprocess.run([sys.executable, "-m", "training", *argv], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    events = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]
    return p.returncode, events, p.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    """(data root, run dir, events) of a 2-epoch tiny run through the command line."""
    tmp = tmp_path_factory.mktemp("cli")
    root = make_face68(tmp / "face68")
    cfg = tmp / "cfg.json"
    cfg.write_text(json.dumps(tiny_config(root, epochs=2)))
    rc, events, err = run_training("train", "--config", str(cfg), "--run-dir", str(tmp / "run"))
    assert rc == 0, err
    return root, tmp / "run", events


def test_event_stream_in_order(trained: tuple[Path, Path, list[dict]]) -> None:
    _, run, events = trained
    kinds = [e["event"] for e in events]
    firsts = [kinds.index(k) for k in ("start", "progress", "metric", "checkpoint", "exported", "done")]
    assert firsts == sorted(firsts), kinds
    assert kinds[-1] == "done" and "error" not in kinds
    metrics = [e for e in events if e["event"] == "metric"]
    assert [m["epoch"] for m in metrics] == [1, 2] and all(m["nme_ion"] > 0 for m in metrics)
    assert (run / "export" / "tiny.onnx").is_file() and (run / "export" / "tiny.json").is_file()
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "events.jsonl").is_file()
    # the copy in the run folder is the same stream
    assert [json.loads(ln)["event"] for ln in (run / "events.jsonl").read_text().splitlines()] == kinds


def test_eval_of_the_trained_model_reproduces_its_validation(trained: tuple[Path, Path, list[dict]],
                                                             capsys: pytest.CaptureFixture) -> None:
    """``eval`` of the export and of best.pt gives the NME training reported for best.pt."""
    root, run, events = trained
    done = events[-1]
    decode, best = done["best"]["decode"], done["best_metrics"]
    res = {}
    for model in (run / "export" / "tiny.onnx", run / "checkpoints" / "best.pt"):
        rc = training_main(["eval", "--model", str(model), "--data", str(root), "--list", "val.txt",
                            "--decode", "all", "--threads", "1", "--out", str(run / "eval" / model.suffix[1:])])
        assert rc == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["default_decode"] == decode and summary["n"] == 8
        res[model.suffix] = summary["results"]
    for suffix, results in res.items():
        assert results[decode]["nme_ion"] == pytest.approx(best["nme_ion"], rel=1e-4), suffix
        assert results[decode]["fr10_ion"] == pytest.approx(best["fr10_ion"]), suffix
    assert (run / "eval" / "onnx" / "ced.png").is_file()


def test_diverging_run_exits_3_and_keeps_the_last_good_checkpoint(trained: tuple[Path, Path, list[dict]],
                                                                  tmp_path: Path) -> None:
    root, run, _ = trained
    run2 = tmp_path / "run"
    shutil.copytree(run, run2)
    good = (run2 / "checkpoints" / "last.pt").read_bytes()
    rc, events, err = run_training("train", "--config", str(run2 / "config.json"), "--run-dir", str(run2),
                                   "--resume", "--set", "train.epochs=3", "--set", "train.lr=1e30")
    assert rc == 3, err
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "diverged"
    assert "epoch 3" in events[-1]["message"] and "last good checkpoint" in events[-1]["message"]
    assert (run2 / "checkpoints" / "last.pt").read_bytes() == good


def test_config_error_exits_2_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"train": {"epochz": 3}}))
    rc = training_main(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "run")])
    assert rc == 2
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["event"] == "error" and ev["kind"] == "ConfigError" and "epochz" in ev["message"]
    assert not (tmp_path / "run").exists()


def test_flip_averaged_export_is_the_mean_of_the_two_forwards(trained: tuple[Path, Path, list[dict]],
                                                              tmp_path: Path) -> None:
    """``export --flip-average --label-offset``: its coords are the plain model's answer on the crop and,
    mirrored back, on the mirror image, averaged and moved by the offset; a bad flag pair is one line."""
    import onnxruntime as ort

    from kpdesk.vision.schema import get_schema

    _, run, _ = trained
    ckpt = str(run / "checkpoints" / "best.pt")
    plain, avg = tmp_path / "plain.onnx", tmp_path / "avg.onnx"
    assert training_main(["export", "--checkpoint", ckpt, "--out", str(plain)]) == 0
    assert training_main(["export", "--checkpoint", ckpt, "--out", str(avg), "--flip-average",
                          "--label-offset", "0.5", "-0.25"]) == 0
    meta = json.loads(avg.with_suffix(".json").read_text())
    assert meta["info"]["flip_average"]["label_offset_crop_px"] == [0.5, -0.25]
    s = meta["input_size"]
    x = np.random.default_rng(0).standard_normal((2, 3, s, s)).astype(np.float32)
    run_plain = ort.InferenceSession(str(plain)).run
    a = run_plain(None, {"input": x})[0].reshape(2, 68, 2) * s - 0.5
    b = run_plain(None, {"input": np.ascontiguousarray(x[..., ::-1])})[0].reshape(2, 68, 2) * s - 0.5
    want = (a + get_schema("ibug68").flip_points(b, s)) / 2 + np.array([0.5, -0.25])
    got = ort.InferenceSession(str(avg)).run(None, {"input": x})[0].reshape(2, 68, 2) * s - 0.5
    assert np.abs(got - want).max() < 1e-3
    assert training_main(["export", "--checkpoint", ckpt, "--out", str(tmp_path / "bad.onnx"),
                          "--label-offset", "1", "0"]) == 2


def test_a_missing_third_party_package_leaves_out_only_its_commands(tmp_path: Path) -> None:
    """Without torch-pruning (a lent GPU machine's image lacks it) ``train`` still parses and ``prune`` says why
    it is not there; run in a child process so the real torch_pruning stays importable here."""
    import textwrap

    script = textwrap.dedent("""
        import sys
        sys.modules["torch_pruning"] = None  # import torch_pruning -> ModuleNotFoundError
        from training.cli import build_parser, main
        ap, runners, unavailable = build_parser()
        assert "train" in runners and "distill" in runners and "prune" not in runners, sorted(runners)
        assert unavailable == {"training.prune.job": "torch_pruning"}, unavailable
        sys.exit(main(["prune", "--config", "x.json"]))
    """)
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "unknown command 'prune'" in proc.stderr and "torch_pruning is missing" in proc.stderr
