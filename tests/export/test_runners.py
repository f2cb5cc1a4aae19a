"""The onnxruntime runner's session: one intra-op thread and no spinning threads, as a cascade needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from visioncascade.export import OnnxRunner


def _softmax_model(path: Path) -> Path:
    """A real ONNX file with the exported models' interface: ``image`` (N, 2, 2, 1) in, ``probabilities`` out."""
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("Softmax", ["flat"], ["probabilities"], axis=1),
        ],
        "softmax",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 2, 2, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_onnx_runner_session_uses_one_thread_without_spinning(tmp_path: Path):
    runner = OnnxRunner(_softmax_model(tmp_path / "m.onnx"))
    options = runner.session.get_session_options()
    assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    got = runner.predict(np.zeros((3, 2, 2, 1), np.uint8))
    np.testing.assert_allclose(got, np.full((3, 4), 0.25), atol=1e-7)


def test_onnx_runner_takes_more_intra_op_threads_when_asked(tmp_path: Path):
    runner = OnnxRunner(_softmax_model(tmp_path / "m.onnx"), intra_op_threads=3)
    options = runner.session.get_session_options()
    assert options.intra_op_num_threads == 3
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
