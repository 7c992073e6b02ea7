"""Pure numpy + cv2 core shared by the app and by training.

Keypoint schemas, crop transforms and their inverses, codecs between keypoints and
network targets, model manifests and result dataclasses. Nothing here imports Qt,
torch or onnxruntime.
"""

from kpdesk.vision.codecs import HeatmapCodec, LandmarkDecoder, RegressionCodec
from kpdesk.vision.schema import KeypointSchema, get_schema, list_schemas
from kpdesk.vision.transforms import CropSpec, crop_params_from_points

__all__ = [
    "CropSpec",
    "HeatmapCodec",
    "KeypointSchema",
    "LandmarkDecoder",
    "RegressionCodec",
    "crop_params_from_points",
    "get_schema",
    "list_schemas",
]
