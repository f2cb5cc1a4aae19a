"""The end-to-end demo: procedural scenes, three models, exports, a cascade, the API and a summary."""

from visioncascade.demo.run import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
