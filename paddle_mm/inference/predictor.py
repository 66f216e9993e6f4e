"""Predictor: an exported directory -> normalized features and image-text scores, on a chosen backend.

    p = Predictor("inference/", backend="auto", precision="fp32")
    img = p.encode_images(["a.jpg", "b.png"])           # (2, D), L2-normalized
    txt = p.encode_texts(["一只猫", "一只狗"])              # (2, D)
    logits = p.score(["a.jpg"], ["一只猫", "一只狗"])       # (1, 2): the combined graph

    # an export signed as a package (docs/model_package.md): verified, then run from the verified bytes
    p = Predictor.from_package("pkg/", trust, model="cn-clip", state=RollbackStore(default_state_path()))

    # the export of a fusion model (its "fusion" graph): image-question pairs, one question per image
    vqa = Predictor("inference_vqa/")
    vqa.answer(["a.png"], ["图中有几个图形？"])   # Prediction(labels=["2"], scores=[0.93], probabilities=(1, 29))
    vqa.classify(images, texts)                  # the same for a classifier: its class names
    Predictor("inference_match/").match(images, captions)   # (N,) match probabilities of the pairs

Pre-processing (Chinese-CLIP's resize + normalize, its WordPiece tokenizer) is rebuilt from
``inference.yml`` and ``vocab.txt`` alone. Inputs are cut into batches of ``batch_size``; each text batch
drops its all-padding columns (exact: pad keys are masked) so short captions cost less.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

import hardware
from hardware import DeviceError, DeviceSpec, parse_device, require_device
from hardware.select import check_backend, missing, variant_format

from ..package.keys import Decryptor
from ..package.trust import RollbackStore, TrustStore
from ..text.tokenizer import WordPieceTokenizer, trim_padding
from ..vision.transforms import ImageTransform
from . import auto
from .backends import Backend, build_backend, build_backend_from_memory
from .model_dir import BACKENDS, PRECISIONS, ExportDirError, ExportInfo, read_inference_yml
from .verified import VerifiedExport, verify_export

BACKEND_CHOICES = ("auto", *BACKENDS)
# precisions that run another precision's files with a runtime option: bf16 = the fp32 graphs in Paddle
# Inference with oneDNN's BF16 kernels (hardware.inference.paddle_inference_config); auto = the fastest of the
# fp32 runtimes and, on a CPU with BF16, that BF16 one where its features stay within BF16_MIN_COSINE of fp32's
RUNTIME_PRECISIONS = {"bf16": ("fp32", ("paddle_inference",)), "auto": ("fp32", BACKENDS)}
PRECISION_CHOICES = (*PRECISIONS, *RUNTIME_PRECISIONS)
BF16_CANDIDATE = "paddle_inference/bf16"  # its name among auto's candidates (and in Predictor.choices)
BF16_MIN_COSINE = 0.999  # issue #14's accuracy bound for BF16: feature cosine to fp32 on the sample inputs


class Prediction(NamedTuple):
    """What :meth:`Predictor.answer` / :meth:`Predictor.classify` return for N image-text pairs: the best label
    of each pair, its probability, and every label's probability (N, n_labels) in ``Predictor.labels`` order."""

    labels: list[str]
    scores: np.ndarray
    probabilities: np.ndarray


class Predictor:
    """Runs an export directory written by ``tools/export_model.py``, or a verified package of one.

    Args:
        model_dir: the export directory (holding ``inference.yml``), or a :class:`VerifiedExport` (what
            :meth:`from_package` passes): then every model file is taken from the verified bytes in memory.
        backend: ``paddle_inference``, ``onnxruntime`` or ``auto`` (fastest here, measured once and cached;
            see :mod:`paddle_mm.inference.auto`).
        precision: ``fp32``, ``int8`` (ONNX Runtime dynamic INT8 towers; no combined INT8 graph), ``bf16``
            (the fp32 graphs in Paddle Inference with oneDNN's BF16 kernels; a CPU with AVX512_BF16 or AMX;
            docs/performance.md has its speed and accuracy) or ``auto``: fp32, or BF16 where this CPU has it,
            the BF16 run's features keep a cosine of at least :data:`BF16_MIN_COSINE` to fp32's on the sample
            inputs and it is the faster (measured like ``backend="auto"``; INT8 is never chosen for you).
        device: a device string (``hardware.device_choices()``); it and the backend are checked against this
            machine by :mod:`hardware` first (:class:`hardware.DeviceError`: one line with the install command).
        threads: CPU threads per backend (default: the cores this process may use).
        batch_size: inputs per backend call.
        varying_shapes: True when calls come with any batch size up to ``batch_size`` and texts of any length
            (a server's dynamic batches). A runtime that compiles per input shape (Paddle Inference on the CPU:
            ~100 ms and a copy of the weights per new shape, :func:`hardware.inference.shape_compiled`) keeps
            only its :data:`hardware.inference.MKLDNN_SHAPE_CACHE` latest shapes; where the graph has more
            (image: ``batch_size``; text: ``batch_size`` x the lengths in steps of 8), ``auto`` leaves it out
            wherever another runtime runs the same precision, as the steady-state timing it decides by cannot
            see the recompiles (BF16 runs on Paddle Inference only, so ``precision="auto"`` then stays fp32).
            The left-out runtime is named with the reason in ``choices[graph].failed``.
    """

    def __init__(
        self,
        model_dir: str | Path | VerifiedExport,
        backend: str = "auto",
        precision: str = "fp32",
        device: str = hardware.DEFAULT_DEVICE,
        threads: int | None = None,
        batch_size: int = 8,
        cache_dir: str | Path | None = None,
        varying_shapes: bool = False,
    ):
        if backend not in BACKEND_CHOICES:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKEND_CHOICES}")
        if precision not in PRECISION_CHOICES:
            raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISION_CHOICES}")
        files_precision, runtimes = RUNTIME_PRECISIONS.get(precision, (precision, BACKENDS))
        if backend not in ("auto", *runtimes):
            raise ValueError(f"precision {precision!r} runs on {list(runtimes)}, not {backend!r}; use backend='auto'")
        self._files_precision, self._runtimes = files_precision, runtimes
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: use a positive integer")
        self.backend, self.precision, self.batch_size = backend, precision, batch_size
        self.varying_shapes = bool(varying_shapes)
        if isinstance(model_dir, VerifiedExport):
            self.info: ExportInfo = model_dir.info
            self.manifest = model_dir.manifest
            self._memory: dict[str, bytes] | None = self._needed(model_dir.files)  # dropped once built
        else:
            self.info, self.manifest, self._memory = read_inference_yml(model_dir), None, None
        self.device: DeviceSpec = parse_device(device)
        require_device(self.device)
        if precision == "bf16":
            from hardware.inference import check_bf16

            check_bf16(self.device)
        fmt = variant_format(backend, files_precision)  # None: no such variant, which the export's own check names
        if fmt is not None:
            check_backend(backend, fmt, self.device)
        self.threads = threads
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.transform, self.tokenizer = _preprocessors(self.info, self._memory)
        self.pad_id = int(self.info.preprocess["text"]["pad_id"])
        self._runners: dict[str, Backend] = {}
        self.choices: dict[str, auto.Choice] = {}  # graph -> what auto picked (when backend="auto")

    @classmethod
    def from_package(
        cls,
        path: str | os.PathLike,
        trust: TrustStore,
        *,
        model: str,
        state: RollbackStore | None,
        decryptor: Decryptor | None = None,
        now: dt.datetime | None = None,
        **options: Any,
    ) -> Predictor:
        """A predictor for the SM-signed package of an export directory at ``path``.

        The package is verified first (:func:`paddle_mm.inference.verified.verify_export`: signature by a
        ``trust`` anchor, ``model`` name, rollback ``state``, expiry, every file's SM3 digest, decryption
        with ``decryptor`` when encrypted); a refusal raises its :class:`paddle_mm.package.PackageRefused`
        subclass before any byte reaches a runtime. The runtimes then get the verified bytes from memory.
        ``options``: the other arguments of :class:`Predictor` (backend, precision, device, ...).
        """
        return cls(verify_export(path, trust, model=model, state=state, decryptor=decryptor, now=now), **options)

    @classmethod
    def from_package_files(
        cls,
        path: str | os.PathLike,
        trust_files: Sequence[str | os.PathLike],
        *,
        model: str,
        state_file: str | os.PathLike | None = None,
        decrypt_key_file: str | os.PathLike | None = None,
        passphrase_env: str | None = None,
        **options: Any,
    ) -> Predictor:
        """:meth:`from_package` with its trust anchors, rollback state and decryption key given as files, as
        ``tools/infer.py`` and ``tools/predict.py`` take them: the signers' public keys or certificates
        (``trust_files``), the rollback state file (default :func:`paddle_mm.package.default_state_path`) and,
        for an encrypted package, the recipient's private key PEM (its passphrase, if it has one, in the
        environment variable ``passphrase_env``)."""
        from ..package import LocalDecryptor, PrivateKey, default_state_path
        from ..package.keys import passphrase_from_env

        trust = TrustStore.from_files(list(trust_files))
        state = RollbackStore(state_file or default_state_path())
        decryptor = None
        if decrypt_key_file:
            secret = passphrase_from_env(passphrase_env)
            decryptor = LocalDecryptor(PrivateKey.from_pem(Path(decrypt_key_file).read_bytes(), secret))
        return cls.from_package(path, trust, model=model, state=state, decryptor=decryptor, **options)

    def _needed(self, files: dict[str, bytes]) -> dict[str, bytes]:
        """The verified files this predictor may load (vocabulary; its precision's graphs for its backends)."""
        backends = self._runtimes if self.backend == "auto" else (self.backend,)
        names = {self.info.preprocess["text"]["vocab_file"]}
        for graph in self.info.graphs.values():
            for backend, graph_files in graph.files.get(self._files_precision, {}).items():
                if backend in backends:
                    names.update(graph_files)
        return {n: files[n] for n in names}

    # -- backends --------------------------------------------------------------------------------------------
    def runner(self, graph: str) -> Backend:
        """The backend running ``graph`` (built, and for ``auto`` chosen, on first use)."""
        if graph not in self._runners:
            self._runners[graph] = self._build(graph)
            if self._memory is not None:  # the runtime holds its own copy now
                for files in self.info.graph(graph).files.get(self._files_precision, {}).values():
                    for name in files:
                        self._memory.pop(name, None)
        return self._runners[graph]

    def _build(self, graph: str) -> Backend:
        if self.backend != "auto" and self.precision != "auto":
            return self._builder(graph, self.backend)()
        variants = [
            b
            for b, p in self.info.graph(graph).variants()
            if p == self._files_precision and b in self._runtimes and self.backend in ("auto", b)
        ]
        if not variants:
            raise ExportDirError(
                f"{self.info.directory}: graph {graph!r} has no {self.precision} model; "
                f"use precision='fp32' or re-export with INT8"
            )
        why_not = {b: missing(b, self.device) for b in variants}  # e.g. no ONNX Runtime provider for this device
        candidates = {b: self._builder(graph, b) for b in variants if why_not[b] is None}
        if not candidates:
            raise DeviceError(f"no backend runs graph {graph!r} ({self.precision}) on {self.device}: {why_not}")
        gates = {}
        if self.precision == "auto" and "paddle_inference" in candidates and self._bf16_here():
            candidates[BF16_CANDIDATE] = self._builder(graph, "paddle_inference", bf16=True)
            gates[BF16_CANDIDATE] = BF16_MIN_COSINE
        if self.varying_shapes:
            self._drop_shape_compiled(graph, candidates, why_not)
            gates = {c: bound for c, bound in gates.items() if c in candidates}
        backend, choice = auto.choose(
            candidates, self.sample_feeds(graph), self._key(graph), directory=self.cache_dir, min_cosine=gates
        )
        choice.failed.update({b: why for b, why in why_not.items() if why is not None})
        self.choices[graph] = choice
        return backend

    def _drop_shape_compiled(self, graph: str, candidates: dict, why_not: dict) -> None:
        """In place: leave out the candidates whose runtime compiles per input shape when the shapes this
        predictor can be called with outnumber that runtime's shape cache (each call could then compile again),
        unless no other candidate is left."""
        from hardware.inference import MKLDNN_SHAPE_CACHE, PADDLE_TEXT_LENGTH_MULTIPLE, shape_compiled

        shapes = self.batch_size  # any batch of 1..batch_size rows
        if "input_ids" in self.info.graph(graph).input_names():  # and texts of any length, in steps
            shapes *= -(-self.tokenizer.context_length // PADDLE_TEXT_LENGTH_MULTIPLE)
        if shapes <= MKLDNN_SHAPE_CACHE:
            return  # every shape compiles once and stays cached (memory: a copy of the weights per shape)
        compiled = {c: shape_compiled(c.split("/")[0], self.device) for c in candidates}  # BF16_CANDIDATE: its runtime
        if all(compiled.values()):
            return  # nothing else runs it here: a compile per new shape beats no model
        for c, why in compiled.items():
            if why:
                del candidates[c]
                why_not[c] = f"left out for varying_shapes=True ({shapes} shapes > {MKLDNN_SHAPE_CACHE} cached): {why}"

    def _bf16_here(self) -> bool:
        """Whether BF16 kernels can run on this predictor's device (the host CPU with AVX512_BF16 or AMX)."""
        from hardware.inference import check_bf16

        try:
            check_bf16(self.device)
        except ValueError:
            return False
        return True

    def _builder(self, graph: str, backend: str, bf16: bool | None = None):
        names = self.info.file_names(graph, backend, self._files_precision)
        bf16 = self.precision == "bf16" if bf16 is None else bf16
        if self._memory is None:
            return lambda: _build_checked(self.info, backend, names, self.device, self.threads, bf16)
        data = {n: self._memory[n] for n in names}
        return lambda: build_backend_from_memory(backend, data, self.device, self.threads, bf16)

    def _key(self, graph: str) -> dict[str, str]:
        from hardware.inference import check_threads, machine_fingerprint

        return {
            "export_id": str(self.info.export.get("id", self.info.directory.resolve())),
            "graph": graph,
            "precision": self.precision,
            "device": str(self.device),
            "threads": str(check_threads(self.threads)),
            "batch": str(self.batch_size),
            "shapes": "varying" if self.varying_shapes else "fixed",
            **machine_fingerprint(),
        }

    def sample_feeds(self, graph: str, batch: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """Random inputs of the graph's shapes (full-length text): what ``auto`` measures with."""
        rng = np.random.default_rng(seed)
        batch = batch or self.batch_size
        feeds = {}
        for name in self.info.graph(graph).input_names():
            if name == "pixel_values":
                size = self.transform.size
                feeds[name] = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
            else:
                ids = rng.integers(1000, self.tokenizer.vocab_size, (batch, self.tokenizer.context_length))
                ids[:, 0] = self.tokenizer.cls_id
                feeds[name] = ids.astype(np.int64)
        return feeds

    # -- features --------------------------------------------------------------------------------------------
    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        """L2-normalized features (N, D) of images (paths, bytes, uint8 arrays, PIL images)."""
        return self.encode_pixels(self.preprocess_images(images))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized features (N, D) of texts."""
        return self.encode_ids(self.tokenizer.encode_batch(list(texts)))

    def preprocess_images(self, images: Sequence[Any]) -> np.ndarray:
        """float32 (N, 3, S, S) model inputs, as Chinese-CLIP preprocesses them."""
        size = self.transform.size
        if not len(images):
            return np.zeros((0, 3, size, size), np.float32)
        return np.stack([self.transform(image) for image in images])

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Features of preprocessed images, batched through the image graph."""
        runner = self.runner("image")
        out = [
            runner.run({"pixel_values": pixels[i : i + self.batch_size]})[0]
            for i in range(0, len(pixels), self.batch_size)
        ]
        return _normalize(np.concatenate(out) if out else self._empty())

    def encode_ids(self, input_ids: np.ndarray) -> np.ndarray:
        """Features of token ids [N, L], batched through the text graph."""
        runner = self.runner("text")
        multiple = runner.length_multiple
        out = [
            runner.run({"input_ids": trim_padding(input_ids[i : i + self.batch_size], self.pad_id, multiple)})[0]
            for i in range(0, len(input_ids), self.batch_size)
        ]
        return _normalize(np.concatenate(out) if out else self._empty())

    def score(self, images: Sequence[Any], texts: Sequence[str]) -> np.ndarray:
        """``logits_per_image`` (len(images), len(texts)) from the combined graph in one call."""
        if self.precision != "fp32":
            raise ExportDirError(
                "the combined graph is exported in fp32 only; score with precision='fp32', or "
                "compare encode_images and encode_texts of an int8 predictor"
            )
        runner = self.runner("clip")
        feeds = {
            "pixel_values": self.preprocess_images(images),
            "input_ids": trim_padding(self.tokenizer.encode_batch(list(texts)), self.pad_id, runner.length_multiple),
        }
        return runner.run(feeds)[2]

    def _empty(self) -> np.ndarray:
        return np.zeros((0, int(self.info.model["embed_dim"])), np.float32)

    # -- fusion models ---------------------------------------------------------------------------------------
    @property
    def is_fusion(self) -> bool:
        """Whether the export is a fusion model's (a ``fusion`` graph: answer, classify, match)."""
        return self.info.model.get("type") == "fusion"

    @property
    def labels(self) -> list[str] | None:
        """The fusion head's output names (answers or classes) in order; None for CLIP and matching exports."""
        return self.info.model.get("labels") if self.is_fusion else None

    def fusion_logits(self, images: Sequence[Any], texts: Sequence[str]) -> np.ndarray:
        """The fusion graph's logits (N, n_outputs) for image-text pairs: ``images[i]`` with ``texts[i]``; one
        image (or one text) pairs with every item of the other list."""
        if not self.is_fusion:
            raise ExportDirError(
                f"{self.info.directory} is the export of a {self.info.model.get('type', 'clip')} model, not a fusion "
                "model: use encode_images / encode_texts / score, or export a fusion checkpoint"
            )
        images, texts = _pairs(list(images), list(texts))
        runner = self.runner("fusion")
        needs = set(self.info.graph("fusion").input_names())
        out = []
        for i in range(0, len(texts), self.batch_size):
            feeds = {}
            if "pixel_values" in needs:
                feeds["pixel_values"] = self.preprocess_images(images[i : i + self.batch_size])
            if "input_ids" in needs:
                ids = self.tokenizer.encode_batch(texts[i : i + self.batch_size])
                feeds["input_ids"] = trim_padding(ids, self.pad_id, runner.length_multiple)
            out.append(runner.run(feeds)[0])
        return np.concatenate(out) if out else np.zeros((0, int(self.info.model["n_outputs"])), np.float32)

    def answer(self, images: Sequence[Any], questions: Sequence[str]) -> Prediction:
        """A VQA model's answer to each image-question pair (paired as :meth:`fusion_logits`), with its
        probability (softmax over the answers)."""
        return self._top_label(images, questions, "answer")

    def classify(self, images: Sequence[Any], texts: Sequence[str]) -> Prediction:
        """A multimodal classifier's class of each image-text pair, with its probability."""
        return self._top_label(images, texts, "classify")

    def match(self, images: Sequence[Any], texts: Sequence[str]) -> np.ndarray:
        """A matching model's probability (N,) that ``texts[i]`` describes ``images[i]`` (sigmoid of its score)."""
        self._require_head("match", matching=True)
        return 1.0 / (1.0 + np.exp(-self.fusion_logits(images, texts)[:, 0]))

    def _top_label(self, images: Sequence[Any], texts: Sequence[str], call: str) -> Prediction:
        self._require_head(call, matching=False)
        logits = self.fusion_logits(images, texts)
        e = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs = e / e.sum(axis=-1, keepdims=True)
        best = probs.argmax(axis=-1)
        names = self.labels or [str(i) for i in range(probs.shape[1])]
        return Prediction([names[j] for j in best], probs[np.arange(len(best)), best], probs)

    def _require_head(self, call: str, matching: bool) -> None:
        if self.is_fusion and bool(self.info.model.get("matching")) != matching:
            what = "an image-text matching model" if self.info.model.get("matching") else "a VQA / classification model"
            fix = "match(images, texts)" if not matching else "answer(images, questions) or classify(images, texts)"
            raise ExportDirError(f"{self.info.directory} is the export of {what}: {call}() does not apply; use {fix}")


def _build_checked(
    info: ExportInfo, backend: str, names: list[str], device: DeviceSpec, threads: int | None, bf16: bool = False
) -> Backend:
    """A backend over files whose digests match inference.yml; a file the runtime cannot parse (truncated,
    not a model) is an ExportDirError naming it, so ``auto`` falls back to the other backend."""
    info.check_files(names)
    try:
        return build_backend(backend, [info.directory / n for n in names], device, threads, bf16)
    except Exception as err:  # ONNX Runtime raises bare Exception subclasses (InvalidProtobuf, Fail, ...)
        if not _is_unloadable(backend, err):
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ExportDirError(
            f"{info.directory / ' + '.join(names)}: {backend} cannot load it ({first[:200]}); a file is truncated "
            "or corrupt: copy the export again or re-export"
        ) from None


_ORT_UNLOADABLE = ("InvalidProtobuf", "InvalidGraph", "Fail", "NoSuchFile")


def _is_unloadable(backend: str, err: Exception) -> bool:
    """Whether a runtime refused the model files themselves (not the device, which hardware reports)."""
    if backend == "paddle_inference":  # e.g. "(Unavailable) Cannot read tensor desc size" for a cut .pdiparams
        return isinstance(err, RuntimeError) and not isinstance(err, DeviceError)
    return type(err).__module__.startswith("onnxruntime") and type(err).__name__ in _ORT_UNLOADABLE


def _pairs(images: list[Any], texts: list[str]) -> tuple[list[Any], list[str]]:
    """Equal-length lists, or one item broadcast over the other list."""
    if len(images) == len(texts):
        return images, texts
    if len(images) == 1:
        return images * len(texts), texts
    if len(texts) == 1:
        return images, texts * len(images)
    raise ValueError(
        f"{len(images)} images and {len(texts)} texts: give one text per image, or one image (or one text) for all"
    )


def _normalize(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def _preprocessors(info: ExportInfo, memory: dict[str, bytes] | None) -> tuple[ImageTransform, WordPieceTokenizer]:
    image, text = info.preprocess["image"], info.preprocess["text"]
    transform = ImageTransform(
        size=int(image["size"]),
        mean=tuple(image["mean"]),
        std=tuple(image["std"]),
        interpolation=image["interpolation"],
    )
    tokenizer = _tokenizer(info, memory)
    if tokenizer.pad_id != int(text["pad_id"]):
        raise ExportDirError(
            f"{info.directory}: vocab.txt's [PAD] id is {tokenizer.pad_id} but inference.yml says "
            f"pad_id {text['pad_id']}; re-export so that the model and vocabulary agree"
        )
    return transform, tokenizer


def _tokenizer(info: ExportInfo, memory: dict[str, bytes] | None) -> WordPieceTokenizer:
    text = info.preprocess["text"]
    vocab, length = text["vocab_file"], int(text["context_length"])
    if memory is None:
        info.check_files([vocab])
        return WordPieceTokenizer(info.directory / vocab, context_length=length)
    from ..package.loading import sealed_paths

    with sealed_paths({vocab: memory.pop(vocab)}) as paths:  # the tokenizer reads by path, once
        tokenizer = WordPieceTokenizer(paths[vocab], context_length=length)
    tokenizer.vocab_file = f"{info.directory / vocab} (verified)"  # the sealed copy is gone; name the source
    return tokenizer
