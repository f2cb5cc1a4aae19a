"""Runtime: predictors (onnxruntime, LiteRT, Keras, Core ML), cascades, frame sources and event posting."""

from visioncascade.runtime.cascade import Cascade, CascadeResult, StageResult
from visioncascade.runtime.config import CascadeConfig, load_cascade_config
from visioncascade.runtime.predictors import Predictor, find_spec, load_predictor
from visioncascade.runtime.sender import EventSender, HttpEventPoster
from visioncascade.runtime.sources import FrameSource, open_source
from visioncascade.runtime.watch import ContextSchedule, WatchStats, watch

__all__ = [
    "Cascade",
    "CascadeConfig",
    "CascadeResult",
    "ContextSchedule",
    "EventSender",
    "FrameSource",
    "HttpEventPoster",
    "Predictor",
    "StageResult",
    "WatchStats",
    "find_spec",
    "load_cascade_config",
    "load_predictor",
    "open_source",
    "watch",
]
