"""Headless command line: ``kpdesk detect`` (landmarks on a source, with timings) and
``kpdesk models`` (the model catalog). Expected failures (missing file, unreadable image,
camera that cannot open, bad model) print one line to stderr and exit with status 2."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

EXIT_USAGE = 2
DEMO_DEFAULT_FRAMES = 300
VIDEO_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}


EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT / SIGTERM, as shells report them


class CLIError(Exception):
    """An expected failure: reported as one line, exit status 2."""


class _Terminated(Exception):
    """SIGTERM arrived: stop, close the files, report, exit 143."""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Sink:
    """Where annotated frames go: a video file, one image, numbered images, or a folder.

    Images are written whole or not at all; a video is written beside its final name and
    renamed there when it is complete (``close``), so a failure never leaves half a file
    under the name asked for, nor destroys a file that was there."""

    def __init__(self, out: Path, fps: float, single_frame: bool) -> None:
        import cv2

        from kpdesk.vision.files import OutputError, check_writable_target

        self._cv2 = cv2
        self.out = out
        self.fps = fps
        self.single = single_frame
        self._writer: Any = None
        self._part: Path | None = None
        suffix = out.suffix.lower()
        self.kind = "video" if suffix in VIDEO_SUFFIXES else "image" if suffix else "folder"
        self._names: set[str] = set()
        if self.kind == "image" and not cv2.haveImageWriter(f"x{suffix}"):
            raise CLIError(f"{out}: cannot write {suffix} files; use a video ({', '.join(VIDEO_SUFFIXES)}), "
                           f"an image (.png, .jpg, ...) or a folder")
        if self.kind == "folder":
            if out.exists() and not out.is_dir():
                raise CLIError(f"{out}: cannot write: not a folder (give an image or video suffix, or a folder)")
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CLIError(f"{out}: cannot create the folder: {exc.strerror or exc}") from None
            return
        try:
            check_writable_target(out)
        except OutputError as exc:
            raise CLIError(str(exc)) from None

    def _named(self, source_name: str) -> Path:
        """A folder output named after the source file (``a.jpg`` -> ``a.png``; ``a.jpg.png``
        if an ``a.*`` was written already)."""
        name = f"{Path(source_name).stem}.png"
        if name in self._names:
            name = f"{source_name}.png"
        self._names.add(name)
        return self.out / name

    def write(self, frame: np.ndarray, index: int, source_name: str | None = None) -> None:
        from kpdesk.vision.files import OutputError, write_image

        cv2 = self._cv2
        if self.kind == "video":
            if self._writer is None:
                h, w = frame.shape[:2]
                fourcc = cv2.VideoWriter_fourcc(*VIDEO_SUFFIXES[self.out.suffix.lower()])
                direct = self.out.exists() and not self.out.is_file()  # /dev/null and the like
                self._part = None if direct else self.out.with_name(f".{self.out.stem}.part{self.out.suffix}")
                self._writer = cv2.VideoWriter(str(self._part or self.out), fourcc, self.fps, (w, h))
                if not self._writer.isOpened():
                    self._discard()
                    raise CLIError(f"{self.out}: cannot write video (OpenCV cannot open it for writing)")
            self._writer.write(frame)
            return
        if self.kind == "folder":
            path = self._named(source_name) if source_name else self.out / f"frame_{index:06d}.png"
        elif self.single:
            path = self.out
        else:
            path = self.out.with_name(f"{self.out.stem}_{index:06d}{self.out.suffix}")
        try:
            write_image(path, frame)
        except OutputError as exc:
            raise CLIError(str(exc)) from None

    def _discard(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._part is not None:
            self._part.unlink(missing_ok=True)
            self._part = None

    def close(self) -> None:
        """Finish the video and put it under its name. Raises CLIError (one line) if that fails;
        a file already there is then left as it was."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        part, self._part = self._part, None
        if part is None:
            return
        try:
            if part.stat().st_size == 0:
                raise OSError(28, "nothing could be written (disk full?)")
            os.replace(part, self.out)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise CLIError(f"{self.out}: cannot write video: {exc.strerror or exc}") from None


def _stats_table(rows: list[dict[str, float]]) -> list[str]:
    from kpdesk.vision.results import STAGES

    lines = [f"{'stage':<12}{'median ms':>11}{'p95 ms':>10}"]
    for stage in (*STAGES, "total"):
        v = np.array([r[stage] for r in rows])
        lines.append(f"{stage:<12}{np.median(v):>11.2f}{np.percentile(v, 95):>10.2f}")
    return lines


def cmd_detect(args: argparse.Namespace) -> int:
    from kpdesk.assets import AssetMissingError
    from kpdesk.inference.catalog import default_entry, resolve_model, scan_models
    from kpdesk.inference.detectors import create_detector
    from kpdesk.inference.model import LandmarkModel, ModelLoadError
    from kpdesk.inference.pipeline import Pipeline, PipelineConfig
    from kpdesk.inference.reference import ReferenceModel, ReferencePipeline, ReferenceUnavailable, is_reference
    from kpdesk.inference.sources import FolderSource, ImageSource, SourceError, open_source
    from kpdesk.vision.draw import draw_pose_axes, draw_text, render_result
    from kpdesk.vision.files import LineLog, OutputError
    from kpdesk.vision.headpose import face_pose
    from kpdesk.vision.records import frame_record

    try:
        source = open_source(args.source)
    except SourceError as exc:
        raise CLIError(str(exc)) from None
    try:
        if args.model is None:
            entry = default_entry(scan_models(args.models_dir))
            if entry is None:
                raise CLIError("no --model given and no usable model in the model folder (see `kpdesk models`)")
            model_path = entry.onnx_path
        else:
            model_path = resolve_model(args.model, args.models_dir)
        if is_reference(model_path):  # MediaPipe Face Landmarker: its own detector, mesh and tracking
            for flag, given in (("--decode", args.decode), ("--detector", args.detector != "auto"),
                                ("--heatmaps", args.heatmaps)):
                if given:
                    raise CLIError(f"{flag} does not apply to the MediaPipe reference (it runs its own detector "
                                   f"and mesh)")
            model = ReferenceModel.load(model_path)
            detector = None
        else:
            model = LandmarkModel.load(model_path, threads=args.threads)
            if args.decode:
                model.decode_mode = args.decode
            detector = create_detector(args.detector)
    except (ModelLoadError, AssetMissingError, ReferenceUnavailable, ValueError) as exc:
        source.close()
        raise CLIError(str(exc)) from None
    except CLIError:
        source.close()
        raise

    stills = isinstance(source, ImageSource | FolderSource)  # unrelated frames: no tracking
    config = PipelineConfig(max_faces=args.max_faces, smoothing=not args.no_smooth and not stills,
                            keep_heatmaps=args.heatmaps, decode_mode=args.decode)
    if detector is None:
        pipeline = ReferencePipeline(model, config, video=not stills)  # IMAGE mode for unrelated stills
        detector = pipeline.detector
    else:
        pipeline = Pipeline(model, detector, config)
    max_frames = args.max_frames
    if max_frames is None and source.frame_count is None and not source.is_live:
        max_frames = DEMO_DEFAULT_FRAMES
    total = source.frame_count if max_frames is None else min(max_frames, source.frame_count or max_frames)
    try:
        sink = _Sink(Path(args.out), source.fps or 30.0, single_frame=total == 1) if args.out else None
    except CLIError:
        source.close()
        raise
    jsonl = None
    if args.json:
        try:
            jsonl = LineLog(args.json)
        except OutputError as exc:
            source.close()
            raise CLIError(str(exc)) from None

    def on_term(_sig: int, _frame: object) -> None:
        raise _Terminated

    old_term = signal.signal(signal.SIGTERM, on_term) if _main_thread() else None

    rows: list[dict[str, float]] = []
    failed: str | None = None  # an output that could not be written: stop, keep what was written
    detect_ms: list[float] = []  # the detect stage on frames where the detector ran
    n_faces = 0
    interrupted: str | None = None
    t_start = time.perf_counter()
    try:
        index = 0
        for frame, ts in source:
            if max_frames is not None and index >= max_frames:
                break
            if stills:
                pipeline.reset()
            if args.mirror:
                frame = np.ascontiguousarray(frame[:, ::-1])
            result = pipeline.process(frame, index, ts)
            rows.append(result.timings.as_dict())
            n_faces += bool(result.faces)
            if result.extras.get("detected"):
                detect_ms.append(result.timings.detect)
            if sink is not None:
                img = render_result(frame, result, model.schema, heatmap=args.heatmaps, crop_size=model.input_size)
                if args.pose:
                    for face in result.faces:
                        pose = face_pose(face.pts_img, result.frame_size, mirrored=args.mirror)
                        if pose is not None:
                            draw_pose_axes(img, pose)
                draw_text(img, f"{result.timings.total:.1f} ms  {model.name} / {detector.name}")
                sink.write(img, index, source.frame_name)
            if jsonl is not None:
                rec = frame_record(result, mirrored=args.mirror, source_file=source.frame_name, timestamp=ts)
                try:
                    jsonl.write(json.dumps(rec) + "\n")  # written through: a kill loses at most this row
                except OutputError as exc:
                    failed = f"{exc}; the {len(rows) - 1} rows before are kept"
                    break
            index += 1
    except KeyboardInterrupt:
        interrupted = "interrupted"
    except _Terminated:
        interrupted = "terminated"
    except SourceError as exc:
        if not rows:
            raise CLIError(str(exc)) from None
        print(f"kpdesk: warning: {exc}; stopping", file=sys.stderr)
    except CLIError as exc:  # an annotated output could not be written
        failed = str(exc)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        wall = time.perf_counter() - t_start
        source.close()
        detector.close()
        if isinstance(pipeline, ReferencePipeline):
            pipeline.close()
        for out in (sink, jsonl):
            if out is None:
                continue
            try:
                out.close()
            except (CLIError, OutputError) as exc:
                failed = failed or str(exc)
    if failed:
        raise CLIError(failed)

    if interrupted is None and source.shortfall:
        print(f"kpdesk: warning: {source.shortfall}", file=sys.stderr)
    code = {None: 0, "interrupted": EXIT_INTERRUPTED, "terminated": EXIT_TERMINATED}[interrupted]
    m = model.manifest
    note = f" ({interrupted})" if interrupted else ""
    print(f"kpdesk detect: {_plural(len(rows), 'frame')} from {source.name}{note}; "
          f"model {m.name} ({m.schema.num_points} pts, {m.input_size} px, {model.decode_mode}); "
          f"detector {detector.name}; threads {args.threads or 'auto'}")
    if not rows:
        return code
    if isinstance(pipeline, ReferencePipeline):
        print(f"faces: found in {n_faces}/{_plural(len(rows), 'frame')}; MediaPipe's detector and mesh run inside "
              f"its task ('inference'; not timed apart)")
    else:
        print(f"faces: found in {n_faces}/{_plural(len(rows), 'frame')}; "
              f"detector ran on {_plural(len(detect_ms), 'frame')}")
    for line in _stats_table(rows):
        print(line)
    if detect_ms:
        print(f"detector alone (frames it ran on): median {np.median(detect_ms):.2f} ms, "
              f"p95 {np.percentile(detect_ms, 95):.2f} ms")
    mean_total = float(np.mean([r["total"] for r in rows]))
    print(f"FPS: {1000.0 / max(mean_total, 1e-9):.1f} pipeline (1000 / mean total ms), "
          f"{len(rows) / max(wall, 1e-9):.1f} end to end (incl. reading, drawing, writing)")
    if sink is not None:
        print(f"annotated output: {sink.out}")
    if args.json:
        print(f"landmarks: {args.json}")
    return code


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _numbers(text: str, flag: str) -> tuple[float, ...]:
    """``"0"`` / ``"127.5"`` / ``"123.7,116.3,103.5"`` -> floats (one line on error)."""
    try:
        vals = tuple(float(v) for v in text.replace(" ", "").split(",") if v != "")
    except ValueError:
        raise CLIError(f"{flag} takes numbers separated by commas, got {text!r}") from None
    if not vals:
        raise CLIError(f"{flag} needs a value")
    return vals


def cmd_models_import(args: argparse.Namespace, folder: Path) -> int:
    from kpdesk.inference.importer import ImportOptions, ModelImportError, card_lines, import_model

    offset = _numbers(args.crop_offset, "--crop-offset")
    if len(offset) != 2:
        raise CLIError(f"--crop-offset takes two numbers DX,DY, got {args.crop_offset!r}")
    if args.list is not None and args.calibrate is None:
        raise CLIError("--list names a list file of the --calibrate folder: give --calibrate DATA too")
    if args.calibrate is not None and args.crop_scale is not None:
        raise CLIError("--crop-scale and --calibrate exclude each other (calibration fits the crop scale)")
    if args.calibrate_faces < 1:
        raise CLIError(f"--calibrate-faces must be >= 1, got {args.calibrate_faces}")
    opts = ImportOptions(
        points=args.points, size=args.size, color=args.color, layout=args.layout,
        mean=_numbers(args.mean, "--mean"), std=_numbers(args.std, "--std"), output=args.output,
        output_name=args.output_name, input_name=args.input_name, crop_scale=args.crop_scale,
        crop_offset=(offset[0], offset[1]), licence=args.licence or "", origin=args.origin or "",
        command=shlex.join(["kpdesk", *getattr(args, "argv", [])]),
    )
    name = args.name or Path(args.file).stem

    def progress(line: str) -> None:
        print(f"  {line}", flush=True)

    if args.calibrate is not None:
        print(f"calibrating the crop of {args.file} on {args.calibrate} {args.list or ''} "
              f"(up to {args.calibrate_faces} faces)", flush=True)
    try:
        res = import_model(args.file, folder, name, opts, calibrate=args.calibrate, list_name=args.list,
                           calibrate_faces=args.calibrate_faces, replace_existing=args.replace,
                           threads=args.threads, progress=progress)
    except ModelImportError as exc:
        raise CLIError(str(exc)) from None
    if res.fit is not None:
        print(f"fitted {res.fit.describe()}")
    print(res.installed.describe() + f" ({res.installed.path})")
    from kpdesk.vision.manifest import Manifest

    for line in card_lines(Manifest.load(res.installed.path.with_suffix(".json"))):
        print(line)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from kpdesk.inference.catalog import default_models_dir, resolve_model, restamp_model, scan_models
    from kpdesk.inference.model import ModelLoadError
    from kpdesk.inference.reference import reference_entry

    folder = Path(args.models_dir) if args.models_dir else default_models_dir()
    if getattr(args, "models_command", None) == "import":
        folder = Path(args.import_models_dir) if args.import_models_dir else folder
        return cmd_models_import(args, folder)
    if args.restamp:
        try:
            path = resolve_model(args.restamp, folder)
            m = restamp_model(path)
        except ModelLoadError as exc:
            raise CLIError(str(exc)) from None
        print(f"re-stamped {m.name}: {path.with_suffix('.json')} now belongs to {path.name} "
              f"(sha256 {m.onnx_sha256})")
        return 0
    if not folder.is_dir():
        raise CLIError(f"model folder {folder} does not exist" if not folder.exists()
                       else f"{folder} is not a folder")
    entries = scan_models(folder)
    if not entries:
        print(f"no models in {folder}")
        return 0
    print(f"models in {folder}:")
    for e in entries:
        if e.ok and e.manifest is not None:
            m = e.manifest
            hm = f"heatmap {m.heatmap_size}" if m.heatmaps_output else "no heatmap"
            dx, dy = m.crop_offset
            crop = "" if m.plain else f" (crop {m.crop_scale:.2f}, offset {dx:+.2f},{dy:+.2f})"
            print(f"  {e.name:<28} {m.schema.name:<8} {m.schema.num_points:>3} pts  {m.input_size:>4} px  "
                  f"{hm:<12} decode {m.decode:<10} {m.arch}{crop}")
        else:
            print(f"  {e.name:<28} BROKEN: {e.error}")
    ref = reference_entry()
    if ref is not None and not any(e.name == ref.name for e in entries):
        print(f"reference (not in the folder; `--model {ref.name}`):")
        print(f"  {ref.name:<28} {'mesh':<8} {ref.manifest.schema.num_points:>3} pts  {ref.manifest.input_size:>4} px  "
              f"{ref.manifest.arch}, its own detector ({ref.onnx_path})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from kpdesk import __version__

    ap = argparse.ArgumentParser(prog="kpdesk", description="Facial landmarks, headless.")
    ap.add_argument("--version", action="version", version=f"kpdesk {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true", help="log progress (detector choice, ...)")
    sub = ap.add_subparsers(dest="command", required=True)

    d = sub.add_parser("detect", help="find landmarks in a camera, video, image, folder or the demo",
                       description="Find landmarks; print per-stage median / p95 ms and FPS.")
    d.add_argument("source", help="camera index (0, cam:0), video file, image, folder of images, or 'demo'")
    d.add_argument("--model", help="model name in the models folder, or a path to NAME.onnx, or 'mediapipe' "
                                   "(MediaPipe Face Landmarker, the reference: its own detector and 478-point "
                                   "mesh) (default: student if usable, else student-0.25x, teacher, "
                                   "then the first usable model)")
    d.add_argument("--models-dir", help="model folder (default: $KPDESK_MODELS or the repository's models/)")
    d.add_argument("--detector", default="auto", choices=["auto", "blazeface", "haar"])
    d.add_argument("--out", help="annotated output: video (.mp4/.avi), image (.png/.jpg) or folder")
    d.add_argument("--json", help="write one JSON object per frame (landmarks, confidences, pose, timings; "
                                  "the record schema in the README)")
    d.add_argument("--max-frames", type=int, help=f"stop after N frames (demo default {DEMO_DEFAULT_FRAMES})")
    d.add_argument("--max-faces", type=int, default=4)
    d.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = its default)")
    d.add_argument("--decode", choices=["regression", "heatmap", "fusion"], help="override the manifest's decode")
    d.add_argument("--heatmaps", action="store_true", help="blend the heatmaps into the annotated output")
    d.add_argument("--no-smooth", action="store_true", help="no One-Euro smoothing of the points")
    d.add_argument("--mirror", action="store_true", help="flip frames left-right first, as the app's selfie view "
                                                         "(records say mirrored; the pose means the same head motion)")
    d.add_argument("--pose", action="store_true", help="draw each face's head-pose axes and angles in --out "
                                                       "(the --json records always carry yaw / pitch / roll)")
    d.set_defaults(func=cmd_detect)

    m = sub.add_parser("models", help="list the model catalog")
    m.add_argument("--models-dir", help="model folder (default: $KPDESK_MODELS or the repository's models/)")
    m.add_argument("--restamp", metavar="NAME", help="bind NAME.json to NAME.onnx after changing the graph on "
                                                     "purpose (writes the graph's sha256; the shapes must agree)")
    m.set_defaults(func=cmd_models)
    ms = m.add_subparsers(dest="models_command")
    imp = ms.add_parser(
        "import", help="install a third-party landmark ONNX with a manifest written from these options",
        description="Install a third-party landmark ONNX model: describe its input and output, and fit its "
                    "crop on labelled faces with --calibrate (recommended; it refuses a model whose best "
                    "ION NME stays above 15% and names the likely cause). Example (PFLD-style, 112 px RGB "
                    "in [0, 1], 136 outputs in [0, 1] of the crop): kpdesk models import pfld.onnx --name pfld "
                    "--points 68 --size 112 --color rgb --mean 0 --std 255 --output coords01 "
                    "--calibrate ../shared/data/face68 --list val.txt")
    imp.add_argument("file", help="the .onnx graph")
    imp.add_argument("--name", help="model name in the catalog (default: the file's stem)")
    imp.add_argument("--points", type=int, help="landmarks the model predicts: 68 (iBUG order) or 5 (eyes, nose "
                                                "tip, mouth corners); default: read off the output")
    imp.add_argument("--size", type=int, help="input side in pixels (default: read off the graph)")
    imp.add_argument("--color", choices=["rgb", "bgr"], default="rgb", help="channel order it takes (default rgb)")
    imp.add_argument("--layout", choices=["auto", "nchw", "nhwc"], default="auto",
                     help="input layout (default: read off the graph's input shape, else nchw)")
    imp.add_argument("--mean", default="0", help="subtracted from 0..255 pixels: one value or three in the "
                                                 "model's channel order (default 0)")
    imp.add_argument("--std", default="255", help="then divided by: one value or three (default 255: input "
                                                  "in [0, 1])")
    imp.add_argument("--output", choices=["coords01", "pixels", "heatmaps"], default="coords01",
                     help="coordinates in [0, 1] of the crop, coordinates in crop pixels, or heatmaps "
                          "(B, K, H, H) (default coords01)")
    imp.add_argument("--output-name", help="the graph output holding the landmarks, when several could")
    imp.add_argument("--input-name", help="the graph input taking the image, when there are several")
    imp.add_argument("--calibrate", metavar="DATA", help="labelled faces (a face68 / face5 / 300W folder) to fit "
                                                         "the crop scale and centre offset on")
    imp.add_argument("--list", metavar="LIST", help="list file in DATA (e.g. val.txt; default: the first)")
    imp.add_argument("--calibrate-faces", type=int, default=200,
                     help="faces used for the fit, spread over the list (default 200)")
    imp.add_argument("--crop-scale", type=float, help="without --calibrate: crop side / landmark-box side "
                                                      "(default: the point layout's, 1.5 for 68 points)")
    imp.add_argument("--crop-offset", default="0,0", help="without --calibrate: crop centre minus box centre, "
                                                          "DX,DY in box sides (default 0,0)")
    imp.add_argument("--licence", help="the model's licence, for its card")
    imp.add_argument("--origin", help="where the model came from (URL, paper), for its card")
    imp.add_argument("--replace", action="store_true", help="replace a model of that name (kept in .backup/)")
    imp.add_argument("--threads", type=int, default=0, help="onnxruntime threads for the calibration (0: its "
                                                            "default)")
    imp.add_argument("--models-dir", dest="import_models_dir",
                     help="model folder (default: $KPDESK_MODELS or the repository's models/)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in an imported model's card
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="kpdesk: %(message)s")
    if args.command == "detect":
        for flag, value, low in (("--max-frames", args.max_frames, 1), ("--max-faces", args.max_faces, 1),
                                 ("--threads", args.threads, 0)):
            if value is not None and value < low:
                print(f"kpdesk: error: {flag} must be >= {low}, got {value}", file=sys.stderr)
                return EXIT_USAGE
        from kpdesk.inference.model import max_threads

        if args.threads > max_threads():
            print(f"kpdesk: warning: --threads {args.threads} is more than this machine's {max_threads()} CPUs: "
                  f"using {max_threads()}", file=sys.stderr)
            args.threads = max_threads()
    try:
        return int(args.func(args))
    except CLIError as exc:
        print(f"kpdesk: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
