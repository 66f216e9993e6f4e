"""Runtimes that execute one exported graph: Paddle Inference and ONNX Runtime.

A backend is built from the graph's files and a device, and maps named numpy inputs to the graph's
outputs in declared order: ``backend.run({"pixel_values": x}) -> [image_features]``. Device and thread
choices come from :mod:`hardware.inference`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from hardware import DeviceSpec


class Backend(Protocol):
    name: str

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs of the graph for these named inputs, in the graph's declared output order."""


class PaddleInferenceBackend:
    """Paddle Inference predictor for ``<graph>.json`` + ``<graph>.pdiparams`` (oneDNN on CPU)."""

    name = "paddle_inference"

    def __init__(self, files: list[Path], device: DeviceSpec, threads: int | None = None, mkldnn: bool = True):
        import paddle.inference as pi

        from hardware.inference import paddle_inference_config

        model_file, params_file = (str(f) for f in files)
        self._predictor = pi.create_predictor(paddle_inference_config(model_file, params_file, device, threads, mkldnn))
        self.input_names = list(self._predictor.get_input_names())
        self._outputs = [self._predictor.get_output_handle(n) for n in self._predictor.get_output_names()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        for name in self.input_names:
            handle = self._predictor.get_input_handle(name)
            value = np.ascontiguousarray(_feed(feeds, name))
            handle.reshape(list(value.shape))
            handle.copy_from_cpu(value)
        self._predictor.run()
        return [h.copy_to_cpu() for h in self._outputs]


class OnnxRuntimeBackend:
    """ONNX Runtime session for ``<graph>.onnx`` or ``<graph>.int8.onnx`` with all graph optimizations."""

    name = "onnxruntime"

    def __init__(self, files: list[Path], device: DeviceSpec, threads: int | None = None):
        import onnxruntime as ort

        from hardware.inference import onnxruntime_providers, onnxruntime_session_options

        # files[0] is the .onnx file; a second one is its external weights file, found by ONNX Runtime itself.
        self._session = ort.InferenceSession(
            str(files[0]), onnxruntime_session_options(threads), providers=onnxruntime_providers(device)
        )
        self.input_names = [i.name for i in self._session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(None, {n: _feed(feeds, n) for n in self.input_names})


def _feed(feeds: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in feeds:
        raise KeyError(f"the graph needs input {name!r}, got {sorted(feeds)}")
    return feeds[name]


def build_backend(backend: str, files: list[Path], device: DeviceSpec, threads: int | None = None) -> Backend:
    """A ready backend by name (``paddle_inference`` or ``onnxruntime``) for one graph variant's files."""
    if backend == "paddle_inference":
        return PaddleInferenceBackend(files, device, threads)
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(files, device, threads)
    raise ValueError(f"unknown backend {backend!r}; choose 'paddle_inference', 'onnxruntime' or 'auto'")
