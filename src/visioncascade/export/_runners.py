"""Running exported artifacts: onnxruntime and LiteRT, without TensorFlow or Keras.

The runtime's predictors and the parity proof use these; importing this module costs neither TensorFlow's
start-up (seconds, and hundreds of MB per process) nor its converters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["LiteRTRunner", "OnnxRunner"]


class OnnxRunner:
    """Runs a ``.onnx`` file with onnxruntime on the CPU (1 intra-op thread by default)."""

    def __init__(self, path: str | Path, intra_op_threads: int = 1):
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # No busy-waiting threads: a cascade runs several sessions side by side on few cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, K)`` for ``(N, H, W, C)`` images of raw 0..255 pixels."""
        out = self.session.run(["probabilities"], {"image": np.asarray(images, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float64)


class LiteRTRunner:
    """Runs a ``.tflite`` file with LiteRT (``ai_edge_litert``), one image at a time as an app does."""

    def __init__(self, path: str | Path, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        from visioncascade._tf import silenced_stderr

        self.path = Path(path)
        with silenced_stderr():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
            self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]

    @property
    def input_details(self) -> dict:
        """LiteRT's description of the input tensor (name, shape signature, dtype)."""
        return self._input

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        """Probabilities ``(K,)`` for one ``(H, W, C)`` image of raw 0..255 pixels."""
        self.interpreter.set_tensor(self._input["index"], np.asarray(image, dtype=np.float32)[None])
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self._output["index"])[0], dtype=np.float64)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities ``(N, K)`` for ``(N, H, W, C)`` images, run at batch 1."""
        return np.stack([self.predict_one(image) for image in images])
