"""Never losing a model: installs keep an existing model (new name, or a backup when asked
to replace), fail without leaving anything behind, and the catalog ignores temporary
files; a manifest belongs to one graph (sha256), and can be re-stamped on purpose."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fixtures import export_tiny

from kpdesk.cli import main as kpdesk_main
from kpdesk.inference.catalog import restamp_model, scan_models
from kpdesk.inference.install import install_model
from kpdesk.inference.model import LandmarkModel, ModelLoadError
from kpdesk.vision.manifest import Manifest, file_sha256
from kpdesk.workers.model_install import ModelInstallError

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(scope="module")
def two_graphs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different tiny graphs, both named ``mine`` (in two run folders)."""
    base = tmp_path_factory.mktemp("runs")
    return export_tiny(base / "a", "mine", seed=0), export_tiny(base / "b", "mine", seed=1)


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_installing_over_a_name_keeps_the_old_model_and_picks_a_new_name(two_graphs: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    a, b = two_graphs
    first = install_model(a, None, tmp_path)
    assert first.path == tmp_path / "mine.onnx" and not first.renamed
    second = install_model(b, None, tmp_path)
    assert second.name == "mine-2" and second.renamed and "mine-2" in second.describe()
    assert file_sha256(tmp_path / "mine.onnx") == file_sha256(a)  # the installed model is untouched
    assert file_sha256(tmp_path / "mine-2.onnx") == file_sha256(b)
    assert Manifest.load(tmp_path / "mine-2.json").name == "mine-2"
    assert sorted(e.name for e in scan_models(tmp_path) if e.ok) == ["mine", "mine-2"]
    again = install_model(b, None, tmp_path, name="mine-2")
    assert again.unchanged and _listing(tmp_path) == ["mine-2.json", "mine-2.onnx", "mine.json", "mine.onnx"]


def test_replacing_keeps_the_old_model_as_a_hidden_backup(two_graphs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = two_graphs
    install_model(a, None, tmp_path)
    res = install_model(b, None, tmp_path, replace=True)
    assert res.path == tmp_path / "mine.onnx" and res.backup is not None and res.backup.parent.name == ".backup"
    assert file_sha256(tmp_path / "mine.onnx") == file_sha256(b)
    assert file_sha256(res.backup) == file_sha256(a) and res.backup.with_suffix(".json").is_file()
    assert [e.name for e in scan_models(tmp_path)] == ["mine"]  # the backup is not in the catalog


def test_a_failed_install_leaves_the_folder_as_it_was(two_graphs: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_graphs
    install_model(a, None, tmp_path)
    before = _listing(tmp_path)
    bad = tmp_path.parent / "bad" / "mine.onnx"
    bad.parent.mkdir(exist_ok=True)
    bad.write_bytes(b"not a graph")
    shutil.copy(a.with_suffix(".json"), bad.with_suffix(".json"))
    for replace in (False, True):
        with pytest.raises(ModelInstallError, match="does not load"):
            install_model(bad, None, tmp_path, replace=replace)
        assert _listing(tmp_path) == before


def test_the_catalog_ignores_temporary_and_hidden_files(two_graphs: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = two_graphs
    install_model(a, None, tmp_path)
    (tmp_path / ".mine.tmp.onnx").write_bytes(b"half a graph")  # what a failed write used to leave
    (tmp_path / "other.tmp.onnx").write_bytes(b"half a graph")
    assert [e.name for e in scan_models(tmp_path)] == ["mine"]


def test_a_manifest_of_another_graph_does_not_load(tmp_path: Path) -> None:
    """The shipped student manifest beside the 0.25x graph: same shapes, another model."""
    shutil.copy(MODELS / "student-0.25x.onnx", tmp_path / "student.onnx")
    shutil.copy(MODELS / "student.json", tmp_path / "student.json")
    with pytest.raises(ModelLoadError, match=r"does not belong to its manifest .*re-stamp") as exc:
        LandmarkModel.load(tmp_path / "student.onnx", threads=1)
    assert "\n" not in str(exc.value)
    (entry,) = scan_models(tmp_path)
    assert not entry.ok and "sha256" in (entry.error or "")


def test_restamp_binds_the_manifest_to_a_graph_changed_on_purpose(two_graphs: tuple[Path, Path], tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    a, b = two_graphs
    install_model(a, None, tmp_path)
    shutil.copy(b, tmp_path / "mine.onnx")  # e.g. re-exported by hand
    with pytest.raises(ModelLoadError, match="sha256"):
        LandmarkModel.load(tmp_path / "mine.onnx")
    assert kpdesk_main(["models", "--models-dir", str(tmp_path), "--restamp", "mine"]) == 0
    assert "re-stamped mine" in capsys.readouterr().out
    assert LandmarkModel.load(tmp_path / "mine.onnx").manifest.onnx_sha256 == file_sha256(b)
    assert restamp_model(tmp_path / "mine.onnx").onnx_sha256 == file_sha256(b)  # idempotent


def test_restamp_refuses_a_graph_that_disagrees_with_the_manifest(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    export_tiny(tmp_path, "five", points=68, graph_points=5)
    before = (tmp_path / "five.json").read_text()
    assert kpdesk_main(["models", "--models-dir", str(tmp_path), "--restamp", "five"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "68 points" in err[0]
    assert (tmp_path / "five.json").read_text() == before


@pytest.mark.parametrize("name", ["teacher", "student", "student-0.25x", "student-5pt"])
def test_shipped_manifests_are_stamped_for_their_graphs(name: str) -> None:
    m = Manifest.load(MODELS / f"{name}.json")
    assert m.onnx_sha256 == file_sha256(MODELS / f"{name}.onnx")
    assert '"onnx_sha256"' in (MODELS / f"{name}.json").read_text().split('"info"')[0]  # a top-level field


def test_a_manifest_error_is_a_message_not_a_repr(tmp_path: Path) -> None:
    from kpdesk.vision.manifest import ManifestError

    d = Manifest.load(MODELS / "student.json").to_dict()
    del d["input_size"]
    with pytest.raises(ManifestError) as exc:
        Manifest.from_dict(d, source="x.json")
    assert str(exc.value) == "x.json: invalid manifest: missing field 'input_size'"
    d = Manifest.load(MODELS / "student.json").to_dict()
    del d["schema"]["flip_perm"]
    with pytest.raises(ManifestError) as exc:
        Manifest.from_dict(d, source="x.json")
    assert "Error(" not in str(exc.value) and "flip_perm" in str(exc.value)
