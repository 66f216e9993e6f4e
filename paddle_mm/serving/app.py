"""The HTTP service: FastAPI app factory over a verified package (docs/deploy.md).

    app = create_app(load_serving_config("configs/serving/quickstart.yml"))   # refuses an unverified package
    uvicorn.run(app, host=..., port=..., timeout_graceful_shutdown=30)        # tools/serve.py does this

Every request passes :class:`Guard` (an ASGI middleware) first: request id, token authentication, body size
limit, concurrency limit, then the audit record and the Prometheus metrics once the response is sent, so
refused requests (401, 413, 429...) are audited like the rest.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
import signal
import threading
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..package import PackageConfigError, PackageRefused
from .audit import AuditLog
from .auth import TokenStore
from .batching import Closed, Overloaded
from .gallery import GalleryError, Hit
from .metrics import Metrics
from .model import ModelState, load_model_state

logger = logging.getLogger("paddle_mm.serving")
PUBLIC = ("/healthz", "/readyz")
ZERO_SHOT_SCALE = 100.0  # CLIP's logit scale at its clamp (exp(ln 100)); cn_clip's trained models sit there


class RequestError(Exception):
    """A request the service refuses: HTTP ``status`` and a one-line reason (no payload echoed)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


class StartupRefused(RuntimeError):
    """The package (or a gallery) failed verification or loading; the message says why."""


MAX_TEMPLATES = 200  # templates per zero-shot request; the largest shipped set (openai) has 183


def describe_refusal(err: BaseException) -> str:
    return f"REFUSED {type(err).__name__}: {err}"


# -- request bodies (the OpenAPI description is generated from these) ---------------------------------
class TextsIn(BaseModel):
    texts: list[str] = Field(..., description="texts to embed")


class ImagesIn(BaseModel):
    images: list[str] = Field(..., description="base64-encoded image files (PNG, JPEG, ...)")


class TextQuery(BaseModel):
    text: str
    k: int = Field(10, ge=1)


class ImageQuery(BaseModel):
    image: str = Field(..., description="a base64-encoded image file")
    k: int = Field(10, ge=1)


class ZeroShotIn(BaseModel):
    image: str
    labels: list[str] = Field(..., min_length=1)
    templates: list[str] = Field(["{}"], description="prompt templates with one {} for the label, e.g. 「{}的照片」")


# -- the app --------------------------------------------------------------------------------------------
class Service:
    """The state behind the routes: config, the current model, tokens, audit log, metrics."""

    def __init__(self, cfg: dict[str, Any]):
        self.cfg, self.limits = cfg, cfg["Limits"]
        self.metrics = Metrics()
        self.tokens = TokenStore.from_file(cfg["Auth"]["tokens_file"])
        # opened before the model: an unwritable audit path fails in a second, not after verify and warm-up
        self.audit = AuditLog(cfg["Audit"]["path"], cfg["Audit"]["max_bytes"], cfg["Audit"]["backups"])
        try:
            self.model: ModelState = load_model_state(cfg, self.metrics.observe_batch)
        except (PackageRefused, PackageConfigError, GalleryError) as err:
            raise StartupRefused(describe_refusal(err)) from err
        self.metrics.set_model(self.model)
        self.draining = False
        self._reload_lock = threading.Lock()
        self._prompt_cache: dict[tuple, np.ndarray] = {}
        self.metrics.queue_depth(lambda g: self.model.runners[g].depth)

    def reload(self) -> dict[str, Any]:
        """Verify and load the package at Model.package again; swap only if every check passes."""
        with self._reload_lock:
            old = self.model
            try:
                new = load_model_state(self.cfg, self.metrics.observe_batch)
            except (PackageRefused, PackageConfigError, GalleryError) as err:
                self.metrics.reloads.labels("refused").inc()
                logger.error("reload refused, still serving %s: %s", old.label, describe_refusal(err))
                raise RequestError(409, describe_refusal(err) + f"; still serving {old.name} {old.version}") from err
            self.model = new
            self._prompt_cache.clear()
            self.metrics.set_model(new)
            self.metrics.reloads.labels("ok").inc()
        threading.Thread(target=old.close, name="close-old-model", daemon=True).start()  # drains its queue
        return {"previous": old.label, **new.label}

    def close(self) -> None:
        self.draining = True
        self.model.close(self.cfg["Server"]["graceful_timeout_s"])
        self.audit.close()


def create_app(cfg: dict[str, Any], *, reload_on_sighup: bool = False) -> FastAPI:
    """The FastAPI app for a built serving config (:func:`paddle_mm.serving.config.build_serving_config`).

    Raises :class:`StartupRefused` (with the verifier's reason) when the package or a gallery is refused.
    """
    service = Service(cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if reload_on_sighup:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, _reload_logged, service))
        yield
        service.draining = True
        await run_in_threadpool(service.close)  # in-flight requests are done (uvicorn waited); drain the queues

    auth_docs = not cfg["Auth"]["docs_public"]
    app = FastAPI(
        title="paddle_mm serving",
        version="1",
        lifespan=lifespan,
        description="Chinese-CLIP embeddings, gallery search and zero-shot classification from an "
        "SM2-signed, SM3-verified model package.",
    )
    app.state.service = service
    app.add_middleware(Guard, service=service, auth_docs=auth_docs)
    _add_routes(app, service)
    app.add_exception_handler(RequestError, _request_error)
    app.add_exception_handler(Overloaded, _overloaded)
    app.add_exception_handler(Closed, _closed)
    return app


def _reload_logged(service: Service) -> None:
    try:
        logger.info("reloaded on SIGHUP: %s", service.reload())
    except RequestError as err:
        logger.error("%s", err)


async def _request_error(request: Request, err: RequestError) -> JSONResponse:
    return JSONResponse({"error": str(err)}, err.status, headers=err.headers)


async def _overloaded(request: Request, err: Overloaded) -> JSONResponse:
    return JSONResponse({"error": f"{err}; retry later"}, 429, headers={"Retry-After": str(err.retry_after)})


async def _closed(request: Request, err: Closed) -> JSONResponse:
    return JSONResponse({"error": f"{err}; retry"}, 503, headers={"Retry-After": "1"})


# -- inputs ----------------------------------------------------------------------------------------------
def _decode_image(b64: str, limits: dict[str, Any], index: int) -> bytes:
    """Base64 -> bytes, checked for size and pixel count from the header, before any decoding."""
    if len(b64) > limits["max_image_bytes"] * 4 // 3 + 4:
        raise RequestError(413, f"image {index}: over Limits.max_image_bytes={limits['max_image_bytes']}")
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"image {index}: not valid base64") from None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            width, height = im.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        if isinstance(err, Image.DecompressionBombError):
            raise RequestError(413, f"image {index}: {err}") from None
        raise RequestError(415, f"image {index}: not an image file PIL can identify ({len(data)} bytes)") from None
    if width * height > limits["max_pixels"]:
        raise RequestError(
            413,
            f"image {index}: {width}x{height} = {width * height} pixels is over "
            f"Limits.max_pixels={limits['max_pixels']} (decompression bomb guard)",
        )
    return data


def _pixels(service: Service, model: ModelState, images: list[str]) -> np.ndarray:
    from ..vision.transforms import ImageDecodeError

    if not images or len(images) > service.limits["max_images"]:
        raise RequestError(413 if images else 400, f"{len(images)} images: send 1..{service.limits['max_images']}")
    data = [_decode_image(b64, service.limits, i) for i, b64 in enumerate(images)]
    try:
        return model.predictor.preprocess_images(data)
    except ImageDecodeError as err:
        raise RequestError(400, f"cannot decode an image: {str(err)[:200]}") from None


def _token_ids(service: Service, model: ModelState, texts: list[str], limit: int) -> np.ndarray:
    if not texts or len(texts) > limit:
        raise RequestError(413 if texts else 400, f"{len(texts)} texts: send 1..{limit}")
    longest = max(len(t) for t in texts)
    if longest > service.limits["max_text_chars"] or not all(t.strip() for t in texts):
        raise RequestError(
            400,
            f"texts must be non-empty and at most Limits.max_text_chars="
            f"{service.limits['max_text_chars']} characters (longest: {longest})",
        )
    return model.predictor.tokenizer.encode_batch(texts)


def _k(service: Service, k: int) -> int:
    if k > service.limits["max_k"]:
        raise RequestError(400, f"k={k} is over Limits.max_k={service.limits['max_k']}")
    return k


def _gallery(model: ModelState, kind: str):
    if kind not in model.galleries:
        raise RequestError(404, f"no {kind} gallery configured (Gallery.{kind}); build one with tools/build_index.py")
    return model.galleries[kind]


def _hits(hits: list[Hit]) -> list[dict[str, Any]]:
    return [{"id": h.id, "score": round(h.score, 6), **h.meta} for h in hits]


async def _embed(request: Request, model: ModelState, graph: str, rows: np.ndarray) -> np.ndarray:
    request.scope["paddle_mm.model"] = model.label
    request.scope["paddle_mm.items"] = len(rows)
    return await model.runners[graph].run(rows)


# -- routes ----------------------------------------------------------------------------------------------
def _add_routes(app: FastAPI, service: Service) -> None:
    @app.get("/healthz", tags=["ops"])
    async def healthz():
        return {"status": "alive"}

    @app.get("/readyz", tags=["ops"])
    async def readyz():
        if service.draining:
            return JSONResponse({"status": "draining"}, 503)
        return {"status": "ready", **service.model.label}

    @app.get("/metrics", tags=["ops"])
    async def metrics():
        body, content_type = service.metrics.render()
        return Response(body, media_type=content_type)

    @app.post("/v1/embeddings/text", tags=["embeddings"])
    async def embed_text(body: TextsIn, request: Request):
        model = service.model
        ids = _token_ids(service, model, body.texts, service.limits["max_texts"])
        features = await _embed(request, model, "text", ids)
        return {**model.label, "embeddings": features.tolist()}

    @app.post("/v1/embeddings/image", tags=["embeddings"])
    async def embed_image(body: ImagesIn, request: Request):
        model = service.model
        pixels = await run_in_threadpool(_pixels, service, model, body.images)
        features = await _embed(request, model, "image", pixels)
        return {**model.label, "embeddings": features.tolist()}

    @app.post("/v1/search/text-to-image", tags=["search"])
    async def text_to_image(body: TextQuery, request: Request):
        model = service.model
        gallery, k = _gallery(model, "images"), _k(service, body.k)
        query = await _embed(request, model, "text", _token_ids(service, model, [body.text], 1))
        hits = await run_in_threadpool(gallery.search, query, k)
        return {**model.label, "hits": _hits(hits[0])}

    @app.post("/v1/search/image-to-image", tags=["search"])
    async def image_to_image(body: ImageQuery, request: Request):
        return await _image_search(request, body, "images")

    @app.post("/v1/search/image-to-text", tags=["search"])
    async def image_to_text(body: ImageQuery, request: Request):
        return await _image_search(request, body, "texts")

    async def _image_search(request: Request, body: ImageQuery, kind: str):
        model = service.model
        gallery, k = _gallery(model, kind), _k(service, body.k)
        pixels = await run_in_threadpool(_pixels, service, model, [body.image])
        query = await _embed(request, model, "image", pixels)
        hits = await run_in_threadpool(gallery.search, query, k)
        return {**model.label, "hits": _hits(hits[0])}

    @app.post("/v1/classify/zero-shot", tags=["classification"])
    async def zero_shot(body: ZeroShotIn, request: Request):
        model = service.model
        if len(body.labels) > service.limits["max_labels"] or any("{}" not in t for t in body.templates):
            raise RequestError(400, f"send 1..{service.limits['max_labels']} labels and templates that contain {{}}")
        if not 1 <= len(body.templates) <= MAX_TEMPLATES:  # prompts = labels x templates: both bounded
            raise RequestError(400, f"send 1..{MAX_TEMPLATES} templates, got {len(body.templates)}")
        pixels = await run_in_threadpool(_pixels, service, model, [body.image])
        image = await _embed(request, model, "image", pixels)
        classes = await _class_embeddings(request, model, body.labels, body.templates)
        logits = ZERO_SHOT_SCALE * (image @ classes.T)[0]
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        order = np.argsort(-probs)
        return {
            **model.label,
            "scale": ZERO_SHOT_SCALE,
            "labels": [
                {
                    "label": body.labels[i],
                    "probability": round(float(probs[i]), 6),
                    "cosine": round(float(logits[i] / ZERO_SHOT_SCALE), 6),
                }
                for i in order
            ],
        }

    async def _class_embeddings(request: Request, model: ModelState, labels: list[str], templates: list[str]):
        key = (model.sequence, tuple(labels), tuple(templates))
        if key not in service._prompt_cache:
            prompts = [t.replace("{}", label) for label in labels for t in templates]
            ids = _token_ids(service, model, prompts, service.limits["max_labels"] * max(1, len(templates)))
            features = []
            for i in range(0, len(ids), service.cfg["Batching"]["max_batch"]):
                features.append(await model.runners["text"].run(ids[i : i + service.cfg["Batching"]["max_batch"]]))
            per_class = np.concatenate(features).reshape(len(labels), len(templates), -1).mean(axis=1)
            if len(service._prompt_cache) > 64:
                service._prompt_cache.clear()
            service._prompt_cache[key] = per_class / np.linalg.norm(per_class, axis=1, keepdims=True)
        return service._prompt_cache[key]

    @app.post("/admin/reload", tags=["admin"])
    async def reload(request: Request):
        result = await run_in_threadpool(service.reload)
        request.scope["paddle_mm.model"] = {k: result[k] for k in ("model", "version", "sequence")}
        return result


# -- the guard middleware ----------------------------------------------------------------------------------
class Guard:
    """Pure ASGI middleware: auth, body limit, concurrency limit, then audit + metrics for every request."""

    def __init__(self, app, service: Service, auth_docs: bool):
        self.app, self.service, self.auth_docs = app, service, auth_docs
        self.inflight = 0

    def _public(self, path: str) -> bool:
        if path in PUBLIC:
            return True
        if path == "/metrics":
            return self.service.cfg["Auth"]["metrics_public"]
        return not self.auth_docs and path in ("/docs", "/openapi.json", "/docs/oauth2-redirect")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        service, start = self.service, time.perf_counter()
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        identity = service.tokens.identify(headers.get("authorization"))
        record = {
            "id": headers.get("x-request-id", "")[:64] or uuid.uuid4().hex,
            "method": scope["method"],
            "endpoint": path[:128],
            "client": (scope.get("client") or ("-",))[0],
            "who": identity.name if identity else "-",
            "role": identity.role if identity else "-",
        }
        status = {"code": 500, "audited": False}

        def audit(code: int) -> None:
            """Write the record once, before the answer leaves: an answer that cannot be audited is not sent."""
            if status["audited"]:
                return
            status["audited"] = True
            model = scope.get("paddle_mm.model") or service.model.label
            record.update(
                status=code,
                latency_ms=round((time.perf_counter() - start) * 1000, 2),
                items=scope.get("paddle_mm.items", 0),
                result="ok" if code < 400 else ("refused" if code < 500 else "error"),
                **model,
            )
            if path not in PUBLIC and path != "/metrics":
                service.audit.write(record)

        async def send_wrapped(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                audit(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", record["id"].encode())]
            await send(message)

        refusal = self._refuse(path, headers, identity)
        self.inflight += 1
        try:
            if refusal:
                await JSONResponse({"error": refusal[1]}, refusal[0], headers=refusal[2])(scope, receive, send_wrapped)
            else:
                if "content-length" not in headers and scope["method"] in ("POST", "PUT", "PATCH"):
                    receive = await _buffered(receive, service.limits["max_body_bytes"])
                await self.app(scope, receive, send_wrapped)
        except BodyTooLarge:
            await JSONResponse({"error": f"body over Limits.max_body_bytes={service.limits['max_body_bytes']}"}, 413)(
                scope, receive, send_wrapped
            )
        finally:
            self.inflight -= 1
            audit(status["code"])  # nothing was sent (the app raised): recorded as the 500 the server answers
            service.metrics.observe_request(_route_label(scope), status["code"], time.perf_counter() - start)

    def _refuse(self, path: str, headers: dict[str, str], identity) -> tuple[int, str, dict] | None:
        service = self.service
        if not self._public(path):
            if identity is None:
                return 401, "missing or unknown bearer token", {"WWW-Authenticate": 'Bearer realm="paddle_mm"'}
            if path.startswith("/admin/") and identity.role != "admin":
                return 403, f"{path} needs the admin role; token {identity.name!r} has {identity.role!r}", {}
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > service.limits["max_body_bytes"]):
            return (
                413,
                f"Content-Length {length[:20]} over Limits.max_body_bytes={service.limits['max_body_bytes']}",
                {},
            )
        if self.inflight >= service.limits["max_concurrency"] and path not in PUBLIC:
            return (
                503,
                f"over Limits.max_concurrency={service.limits['max_concurrency']} requests in flight",
                {"Retry-After": "1"},
            )
        return None


class BodyTooLarge(Exception):
    pass


async def _buffered(receive, limit: int):
    """Read the whole body (at most ``limit`` bytes, else BodyTooLarge) and return a ``receive`` replaying it.

    Needed for chunked uploads, which carry no Content-Length: FastAPI turns any error raised while it reads the
    body into a 400, so the limit is enforced here, before the app sees a byte."""
    chunks, seen, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        seen += len(chunks[-1])
        if seen > limit:
            raise BodyTooLarge()
        more = message.get("more_body", False)
    body, sent = b"".join(chunks), False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()  # http.disconnect, when it comes
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _route_label(scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
