"""Running landmark models: onnxruntime + face detectors, no Qt, no torch.

model      LandmarkModel (ONNX graph + manifest, validated), ModelOutput, ModelLoadError
catalog    the models folder: scan_models, resolve_model, default_models_dir
detectors  BlazeFace (MediaPipe) and Haar face detectors with box -> crop calibration
tracking   One-Euro smoothing and landmark-driven face tracking
pipeline   Pipeline / PipelineConfig: one frame -> FrameResult with stage timings
sources    frame sources: camera, video, image, folder, synthetic demo
install    write, verify, rename a model into the models folder
importer   `kpdesk models import`: a manifest for a third-party landmark ONNX
calibrate  fitting an imported model's crop scale and offset on labelled faces
reference  MediaPipe Face Landmarker as a reference model (its own detector, 478-point mesh,
           a 68-point view): ReferenceModel, ReferencePipeline, ReferenceLandmarker
"""

from kpdesk.inference.catalog import CatalogEntry, default_models_dir, resolve_model, scan_models
from kpdesk.inference.detectors import (
    BlazeFaceDetector,
    Detection,
    FaceDetector,
    HaarDetector,
    available_detectors,
    create_detector,
)
from kpdesk.inference.model import LandmarkModel, ModelLoadError, ModelOutput
from kpdesk.inference.pipeline import Pipeline, PipelineConfig
from kpdesk.inference.sources import FrameSource, SourceError, list_cameras, open_source
from kpdesk.inference.tracking import OneEuroFilter

__all__ = [
    "BlazeFaceDetector",
    "CatalogEntry",
    "Detection",
    "FaceDetector",
    "FrameSource",
    "HaarDetector",
    "LandmarkModel",
    "ModelLoadError",
    "ModelOutput",
    "OneEuroFilter",
    "Pipeline",
    "PipelineConfig",
    "SourceError",
    "available_detectors",
    "create_detector",
    "default_models_dir",
    "list_cameras",
    "open_source",
    "resolve_model",
    "scan_models",
]
