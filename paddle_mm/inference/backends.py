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
from hardware.inference import PADDLE_TEXT_LENGTH_MULTIPLE


class Backend(Protocol):
    name: str
    length_multiple: int  # text lengths it is fed are padded to a multiple of this (1: any length)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs of the graph for these named inputs, in the graph's declared output order."""


class PaddleInferenceBackend:
    """Paddle Inference predictor for ``<graph>.json`` + ``<graph>.pdiparams`` (oneDNN on CPU)."""

    name = "paddle_inference"
    length_multiple = PADDLE_TEXT_LENGTH_MULTIPLE  # oneDNN compiles its kernels per input shape

    def __init__(
        self,
        files: list[Path],
        device: DeviceSpec,
        threads: int | None = None,
        mkldnn: bool = True,
        bf16: bool = False,
    ):
        import paddle.inference as pi

        from hardware.inference import paddle_inference_config

        model_file, params_file = (str(f) for f in files)
        config = paddle_inference_config(model_file, params_file, device, threads, mkldnn, bf16=bf16)
        self._predictor = pi.create_predictor(config)
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
    """ONNX Runtime session for ``<graph>.onnx`` or ``<graph>.int8.onnx`` with all graph optimizations.

    ``files``: paths, or verified bytes by file name (:func:`build_backend_from_memory`); either way the
    graph comes first and an external weights file (``<graph>.onnx.data``) second."""

    name = "onnxruntime"
    length_multiple = 1

    def __init__(self, files: list[Path] | dict[str, bytes], device: DeviceSpec, threads: int | None = None):
        import onnxruntime as ort

        from hardware.inference import onnxruntime_providers, onnxruntime_session_options

        options = onnxruntime_session_options(threads)
        if isinstance(files, dict):
            (_, model), *weights = files.items()
            if weights:
                _weights_from_memory(options, dict(weights))
        else:
            model = str(files[0])  # a weights file beside it is found by ONNX Runtime itself
        self._session = ort.InferenceSession(model, options, providers=onnxruntime_providers(device))
        self.input_names = [i.name for i in self._session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(None, {n: _feed(feeds, n) for n in self.input_names})


def _feed(feeds: dict[str, np.ndarray], name: str) -> np.ndarray:
    if name not in feeds:
        raise KeyError(f"the graph needs input {name!r}, got {sorted(feeds)}")
    return feeds[name]


def build_backend(
    backend: str, files: list[Path], device: DeviceSpec, threads: int | None = None, bf16: bool = False
) -> Backend:
    """A ready backend by name (``paddle_inference`` or ``onnxruntime``) for one graph variant's files.

    ``bf16``: run the fp32 graph with oneDNN's BF16 kernels (Paddle Inference only)."""
    if bf16 and backend != "paddle_inference":
        raise ValueError(f"precision bf16 runs on paddle_inference (oneDNN), not {backend!r}; use backend='auto'")
    if backend == "paddle_inference":
        return PaddleInferenceBackend(files, device, threads, bf16=bf16)
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(files, device, threads)
    raise ValueError(f"unknown backend {backend!r}; choose 'paddle_inference', 'onnxruntime' or 'auto'")


def build_backend_from_memory(
    backend: str, files: dict[str, bytes], device: DeviceSpec, threads: int | None = None, bf16: bool = False
) -> Backend:
    """A ready backend over verified bytes (file name -> bytes, main file first); nothing is read from disk.

    ONNX Runtime takes the graph and its external weights as bytes. Paddle Inference cannot:
    ``Config.set_model_buffer`` segfaults on PIR ``.json`` programs (Paddle 3.3.1), so it reads sealed
    in-memory copies (:func:`paddle_mm.package.loading.sealed_paths`) that exist only while it is built."""
    if backend == "onnxruntime" and not bf16:
        return OnnxRuntimeBackend(files, device, threads)
    from ..package.loading import sealed_paths

    with sealed_paths(files) as paths:
        return build_backend(backend, [Path(paths[n]) for n in files], device, threads, bf16)


def _weights_from_memory(options, weights: dict[str, bytes]) -> None:
    # ONNX Runtime resolves (canonicalizes) external weight paths, so sealed-memfd links do not work here.
    if not hasattr(options, "add_external_initializers_from_files_in_memory"):
        raise RuntimeError(
            f"this onnxruntime cannot take external weights {sorted(weights)} from memory; "
            "upgrade onnxruntime (1.32 has it) or use backend='paddle_inference'"
        )
    names = [n.rsplit("/", 1)[-1] for n in weights]  # as the graph's external_data locations name them
    options.add_external_initializers_from_files_in_memory(
        names, list(weights.values()), [len(b) for b in weights.values()]
    )
