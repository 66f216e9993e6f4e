"""The serving config: YAML sections -> one plain dict with every default filled in, unknown keys refused.

    cfg = load_serving_config("configs/serving/quickstart.yml", ["Server.port=9000"])
    app = create_app(cfg)                    # paddle_mm.serving.app

Every key, its default and its meaning is in :data:`DEFAULTS` (and docs/deploy.md); a misspelt key is an
error with a did-you-mean, never silently added.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

from ..config import ConfigError, apply_override, parse_yaml

# None = required. Lists and dicts are copied per config.
DEFAULTS: dict[str, dict[str, Any]] = {
    "Model": {
        "package": None,  # the signed package of an export directory (tools/package.py sign)
        "name": None,  # the model name the package must be signed for (no replay of another model)
        "trust": None,  # list of signer public keys / certificates (local configuration, never the package)
        "state_file": None,  # rollback state; None = $PADDLE_MM_PACKAGE_STATE or ~/.local/state/...
        "decrypt_key": None,  # recipient private key PEM for an SM4-encrypted package
        "passphrase_env": None,  # environment variable holding that key's passphrase
        "backend": "onnxruntime",  # paddle_inference | onnxruntime | auto
        "precision": "fp32",  # fp32 | int8 | bf16 | auto (BF16 where faster and within cosine 0.999 of fp32)
        "device": "cpu",
        "threads": None,  # CPU threads per graph (None: the cores this process may use)
    },
    "Gallery": {
        "images": None,  # a gallery directory written by tools/build_index.py (image embeddings)
        "texts": None,  # a gallery of text embeddings (for image -> text search)
        "milvus_uri": None,  # Milvus galleries: the server to use instead of the one in gallery.json
        "milvus_token_file": None,  # file holding the Milvus token ("user:password"), e.g. a mounted Secret
    },
    "Batching": {
        "enabled": True,  # False: every request runs the model on its own (the baseline)
        "max_batch": 32,  # rows per model call
        "max_wait_ms": 4.0,  # how long the first request of a batch waits for company
        "queue_size": 256,  # rows waiting per graph; beyond it: 429 + Retry-After
    },
    "Limits": {
        "max_body_bytes": 8 << 20,  # larger bodies: 413, before they are read
        "max_image_bytes": 4 << 20,  # one encoded image
        "max_pixels": 16_000_000,  # width x height, read from the header before decoding (bombs: 413)
        "max_images": 16,  # per request
        "max_texts": 64,  # per request
        "max_text_chars": 512,
        "max_labels": 256,  # zero-shot classes per request
        "max_k": 100,
        "max_concurrency": 64,  # requests inside the model path at once; beyond: 503 + Retry-After
        "request_timeout_s": 30.0,
    },
    "Auth": {
        "tokens_file": None,  # lines "<name> <role> <sm3 hex of the token>" (tools/serve.py token)
        "metrics_public": False,  # /metrics without a token (scrape inside the NetworkPolicy)
        "docs_public": False,  # /docs and /openapi.json without a token
    },
    "Audit": {
        "path": None,  # JSON lines, append-only, hash-chained (SM3)
        "max_bytes": 64 << 20,  # rotate when the file would grow past this
        "backups": 20,  # rotated files kept (audit.log.1 .. .N)
    },
    "Server": {
        "host": "127.0.0.1",
        "port": 8080,
        "graceful_timeout_s": 30.0,  # in-flight requests get this long after SIGTERM
    },
}


def _did_you_mean(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def build_serving_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults into ``raw`` (sections as in :data:`DEFAULTS`); refuse unknown or missing keys."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a serving config is a mapping of sections, got {type(raw).__name__}")
    cfg = copy.deepcopy(DEFAULTS)
    for section, values in raw.items():
        if section not in DEFAULTS:
            raise ConfigError(
                f"unknown section {section!r}{_did_you_mean(section, list(DEFAULTS))}; sections: {sorted(DEFAULTS)}"
            )
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{section} must be a mapping of keys, got {values!r}")
        for key, value in values.items():
            if key not in DEFAULTS[section]:
                raise ConfigError(
                    f"unknown key {section}.{key}{_did_you_mean(key, list(DEFAULTS[section]))}; "
                    f"keys: {sorted(DEFAULTS[section])}"
                )
            cfg[section][key] = value
    for key in ("package", "name", "trust"):
        if cfg["Model"][key] in (None, "", []):
            raise ConfigError(f"Model.{key} is required; set it in the config or with -o Model.{key}=...")
    if isinstance(cfg["Model"]["trust"], str):
        cfg["Model"]["trust"] = [cfg["Model"]["trust"]]
    if not cfg["Auth"]["tokens_file"]:
        raise ConfigError(
            "Auth.tokens_file is required (the service never runs without authentication); "
            "create one with: python tools/serve.py token --tokens FILE --name NAME"
        )
    if not cfg["Audit"]["path"]:
        raise ConfigError(
            "Audit.path is required (every request is audited); e.g. -o Audit.path=/var/log/paddle_mm/audit.log"
        )
    for key in ("max_batch", "queue_size"):
        if not isinstance(cfg["Batching"][key], int) or cfg["Batching"][key] < 1:
            raise ConfigError(f"Batching.{key}={cfg['Batching'][key]!r}: use a positive integer")
    for key, value in cfg["Limits"].items():
        if not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"Limits.{key}={value!r}: use a positive number")
    return cfg


def load_serving_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read the YAML at ``path``, apply ``Section.key=value`` overrides and :func:`build_serving_config`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"serving config {str(path)!r} not found; pass an existing YAML file with -c")
    raw = parse_yaml(path.read_text(encoding="utf-8")) or {}
    for item in overrides or []:
        apply_override(raw, item)
    return build_serving_config(raw)
