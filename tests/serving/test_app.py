"""The service end to end on loopback (httpx through Starlette's TestClient): verified start, endpoints,
auth, limits, audit, metrics, hot reload with rollback protection."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

from paddle_mm.serving.app import StartupRefused, create_app
from paddle_mm.serving.audit import read_records, verify_chain
from tests.conftest import SIGNED_MODEL, sign_copy

from .conftest import TEXTS, b64, png, serving_config


@pytest.fixture
def cfg(deployment, tmp_path):
    return serving_config(deployment, tmp_path)


@pytest.fixture
def client(cfg, deployment):
    with TestClient(create_app(cfg)) as c:
        c.headers["Authorization"] = f"Bearer {deployment['client']}"
        yield c


def test_embeddings_match_the_predictor_and_search_finds_the_image(client, deployment):
    r = client.post("/v1/embeddings/image", json={"images": [b64(deployment["images"][3])]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["version"], body["sequence"]) == (SIGNED_MODEL, "1.0.0", 1)
    np.testing.assert_allclose(body["embeddings"][0], deployment["image_vectors"][3], atol=1e-5)
    hits = client.post("/v1/search/image-to-image", json={"image": b64(deployment["images"][3]), "k": 3}).json()["hits"]
    assert hits[0]["id"] == 103 and hits[0]["source"] == "img3.png" and len(hits) == 3
    texts = client.post("/v1/embeddings/text", json={"texts": TEXTS[:2]}).json()["embeddings"]
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    t2i = client.post("/v1/search/text-to-image", json={"text": TEXTS[0], "k": 12}).json()["hits"]
    scores = np.asarray(deployment["image_vectors"]) @ np.asarray(texts[0])
    assert [h["id"] for h in t2i] == [100 + i for i in np.argsort(-scores)]
    i2t = client.post("/v1/search/image-to-text", json={"image": b64(deployment["images"][0]), "k": 2}).json()["hits"]
    assert len(i2t) == 2 and i2t[0]["text"] in TEXTS


def test_zero_shot_ranks_labels_by_cosine(client, deployment):
    labels = ["圆形", "三角形", "正方形"]
    r = client.post(
        "/v1/classify/zero-shot",
        json={"image": b64(deployment["images"][1]), "labels": labels, "templates": ["{}的照片", "{}"]},
    )
    assert r.status_code == 200, r.text
    ranked = r.json()["labels"]
    assert sorted(x["label"] for x in ranked) == sorted(labels)
    assert abs(sum(x["probability"] for x in ranked) - 1) < 1e-4
    assert [x["cosine"] for x in ranked] == sorted((x["cosine"] for x in ranked), reverse=True)


def test_zero_shot_bounds_the_templates(client, deployment):
    """labels x templates prompts are encoded per request: too many templates is a 400, not minutes of work."""
    from paddle_mm.serving.app import MAX_TEMPLATES

    body = {"image": b64(deployment["images"][1]), "labels": ["圆形"], "templates": ["{}"] * (MAX_TEMPLATES + 1)}
    r = client.post("/v1/classify/zero-shot", json=body)
    assert r.status_code == 400 and str(MAX_TEMPLATES) in r.text


def test_auth_and_roles(client, deployment):
    no = client.post("/v1/embeddings/text", json={"texts": ["a"]}, headers={"Authorization": ""})
    assert no.status_code == 401 and "WWW-Authenticate" in no.headers
    wrong = client.post(
        "/v1/embeddings/text",
        json={"texts": ["a"]},
        headers={"Authorization": "Bearer " + deployment["client"][:-1] + "x"},
    )
    assert wrong.status_code == 401
    assert client.post("/admin/reload").status_code == 403  # a client token is not an admin token
    assert client.get("/openapi.json").status_code == 200  # with a token
    assert client.get("/openapi.json", headers={"Authorization": ""}).status_code == 401
    assert client.get("/healthz", headers={"Authorization": ""}).status_code == 200
    assert (
        "secret" not in deployment["tokens"].read_text()
        and deployment["client"] not in deployment["tokens"].read_text()
    )


@pytest.mark.parametrize(
    "body, status",
    [
        ({"images": ["not base64!"]}, 400),
        ({"images": [b64(b"plain text, not an image")]}, 415),
        ({"images": []}, 400),
        ({"images": [b64(png(1, (8, 8)))] * 17}, 413),
        ({"texts": ["x"]}, 422),
    ],
)
def test_malformed_images_are_4xx(client, body, status):
    assert client.post("/v1/embeddings/image", json=body).status_code == status


def test_limits(client, cfg):
    assert client.post("/v1/embeddings/text", json={"texts": ["长" * 513]}).status_code == 400
    assert client.post("/v1/embeddings/text", json={"texts": ["a"] * 65}).status_code == 413
    assert client.post("/v1/search/text-to-image", json={"text": "圆", "k": 101}).status_code == 400
    big = b"{" + b" " * (cfg["Limits"]["max_body_bytes"] + 1) + b"}"
    assert (
        client.post("/v1/embeddings/text", content=big, headers={"Content-Type": "application/json"}).status_code == 413
    )
    assert (
        client.post(
            "/v1/embeddings/text", content=b"{bad json", headers={"Content-Type": "application/json"}
        ).status_code
        == 422
    )


def test_chunked_body_over_the_limit_is_cut_off_while_streaming(client, cfg):
    limit = cfg["Limits"]["max_body_bytes"]

    def chunks():  # no Content-Length: the header check cannot see the size
        yield b'{"texts": ["'
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536
        yield b'"]}'

    r = client.post("/v1/embeddings/text", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]


def test_decompression_bomb_refused_from_the_header(client):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8000, 8000)).save(buf, "PNG")  # 64 Mpx that compress to ~60 kB
    assert len(buf.getvalue()) < 200_000
    r = client.post("/v1/embeddings/image", json={"images": [b64(buf.getvalue())]})
    assert r.status_code == 413 and "max_pixels" in r.json()["error"]


def test_every_request_is_audited_without_payloads(client, cfg, deployment):
    client.post("/v1/embeddings/text", json={"texts": ["机密文本内容"]})
    client.post("/v1/embeddings/text", json={"texts": ["a"]}, headers={"Authorization": "Bearer nope"})
    client.post("/v1/embeddings/image", json={"images": ["@@"]})
    records = list(read_records(cfg["Audit"]["path"]))
    assert [(r["who"], r["status"], r["endpoint"]) for r in records] == [
        ("alice", 200, "/v1/embeddings/text"),
        ("-", 401, "/v1/embeddings/text"),
        ("alice", 400, "/v1/embeddings/image"),
    ]
    assert records[0]["model"] == SIGNED_MODEL and records[0]["sequence"] == 1 and records[0]["items"] == 1
    raw = open(cfg["Audit"]["path"], encoding="utf-8").read()
    assert "机密" not in raw and deployment["client"] not in raw and "@@" not in raw
    assert verify_chain(cfg["Audit"]["path"]) == 3


def test_no_answer_leaves_unaudited(deployment, tmp_path):
    from paddle_mm.serving.audit import AuditError

    app = create_app(serving_config(deployment, tmp_path))

    def full_disk(record):
        raise AuditError("audit log write failed: No space left on device")

    app.state.service.audit.write = full_disk
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.post(
            "/v1/embeddings/text", json={"texts": ["圆形"]}, headers={"Authorization": f"Bearer {deployment['client']}"}
        )
    assert r.status_code == 500 and "embeddings" not in r.text


def test_audit_rotates_and_the_chain_catches_an_edit(tmp_path):
    from paddle_mm.serving.audit import AuditError, AuditLog, audit_files

    log = AuditLog(tmp_path / "a.log", max_bytes=600, backups=3)
    for i in range(20):
        log.write({"who": "x", "endpoint": "/e", "status": 200, "items": i})
    log.close()
    files = audit_files(tmp_path / "a.log")
    assert 2 <= len(files) <= 4 and all(f.stat().st_size <= 600 for f in files)
    assert verify_chain(tmp_path / "a.log") == sum(1 for _ in read_records(tmp_path / "a.log"))
    lines = files[-1].read_text().splitlines()
    lines[0] = lines[0].replace('"status":200', '"status":201')
    files[-1].write_text("\n".join(lines) + "\n")
    if len(lines) > 1:
        with pytest.raises(AuditError, match="chain broken"):
            verify_chain(tmp_path / "a.log")


def test_metrics_and_readiness(client, deployment):
    client.post("/v1/embeddings/text", json={"texts": ["圆形"]})
    assert client.get("/readyz").json()["sequence"] == 1
    text = client.get("/metrics").text
    assert 'paddle_mm_requests_total{route="/v1/embeddings/text",status="200"} 1.0' in text
    assert 'paddle_mm_model_sequence{model="%s",version="1.0.0"} 1.0' % SIGNED_MODEL in text
    assert "paddle_mm_batch_rows_bucket" in text
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 401


def _reload(client, deployment):
    return client.post("/admin/reload", headers={"Authorization": f"Bearer {deployment['admin']}"})


def test_hot_reload_new_version_then_refuses_tampered_and_rollback(deployment, tower_export, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(deployment["package"], live)
    cfg = serving_config(deployment, tmp_path, Model={"package": str(live)})
    with TestClient(create_app(cfg)) as client:
        client.headers["Authorization"] = f"Bearer {deployment['client']}"
        sign_copy(tower_export, deployment["key"], live, 2, "1.1.0")
        r = _reload(client, deployment)
        assert r.status_code == 200, r.text
        assert r.json()["previous"]["sequence"] == 1 and r.json()["sequence"] == 2
        assert client.get("/readyz").json()["version"] == "1.1.0"
        # a tampered v3: refused with the reason, v2 keeps serving
        sign_copy(tower_export, deployment["key"], live, 3, "1.2.0")
        weights = next(live.glob("*.onnx"))
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 1
        weights.write_bytes(bytes(data))
        r = _reload(client, deployment)
        assert r.status_code == 409 and "REFUSED DigestMismatchError" in r.json()["error"], r.text
        # v3 with its signature stripped: refused as unsigned
        sign_copy(tower_export, deployment["key"], live, 3, "1.2.0")
        (live / "PACKAGE.sig").unlink()
        r = _reload(client, deployment)
        assert r.status_code == 409 and "REFUSED UnsignedPackageError" in r.json()["error"], r.text
        # the older v1 replayed: rollback refused
        sign_copy(tower_export, deployment["key"], live, 1, "1.0.0-replay")
        r = _reload(client, deployment)
        assert r.status_code == 409 and "REFUSED RollbackError" in r.json()["error"], r.text
        assert client.get("/readyz").json()["version"] == "1.1.0"
        assert client.post("/v1/embeddings/text", json={"texts": ["圆"]}).json()["version"] == "1.1.0"
        reloads = [r for r in read_records(cfg["Audit"]["path"]) if r["endpoint"] == "/admin/reload"]
        assert [r["status"] for r in reloads] == [200, 409, 409, 409] and reloads[0]["who"] == "ops"


@pytest.mark.parametrize("attack", ["unsigned", "tampered", "untrusted", "other-model"])
def test_refuses_to_start(attack, deployment, tower_export, tmp_path):
    from paddle_mm.package import PrivateKey

    pkg = tmp_path / "pkg"
    if attack == "unsigned":
        shutil.copytree(tower_export, pkg)
    elif attack == "untrusted":
        sign_copy(tower_export, PrivateKey.generate(), pkg, 1, "1.0.0")
    elif attack == "other-model":
        sign_copy(tower_export, deployment["key"], pkg, 1, "1.0.0", model="another-model")
    else:
        sign_copy(tower_export, deployment["key"], pkg, 1, "1.0.0")
        (pkg / "inference.yml").write_text((pkg / "inference.yml").read_text() + "\n# edited\n")
    cfg = serving_config(deployment, tmp_path, Model={"package": str(pkg)})
    expected = {
        "unsigned": "UnsignedPackageError",
        "tampered": "SizeMismatchError",
        "untrusted": "UntrustedKeyError",
        "other-model": "ModelMismatchError",
    }[attack]
    with pytest.raises(StartupRefused, match=f"REFUSED {expected}"):
        create_app(cfg)


def test_refuses_a_gallery_of_another_model(deployment, tmp_path):
    info = json.loads((deployment["root"] / "images" / "gallery.json").read_text())
    other = tmp_path / "images"
    shutil.copytree(deployment["root"] / "images", other)
    (other / "gallery.json").write_text(json.dumps({**info, "model": "someone-else"}))
    cfg = serving_config(deployment, tmp_path, Gallery={"images": str(other)})
    with pytest.raises(StartupRefused, match="embedded by model 'someone-else'"):
        create_app(cfg)


def test_auto_serves_text_with_the_runtime_that_runs_any_batch_and_length_at_once(deployment, tmp_path):
    # dynamic batches of 1..8 rows: 8 image shapes fit Paddle Inference's shape cache, 8 x 7 text shapes do not
    cfg = serving_config(deployment, tmp_path, Model={"backend": "auto", "precision": "auto"})
    with TestClient(create_app(cfg)) as c:
        c.headers["Authorization"] = f"Bearer {deployment['client']}"
        assert c.post("/v1/embeddings/text", json={"texts": TEXTS[:3]}).status_code == 200
        predictor = c.app.state.service.model.predictor
    assert predictor.varying_shapes
    assert predictor.choices["text"].backend == "onnxruntime"
    assert "56 shapes > 16 cached" in predictor.choices["text"].failed["paddle_inference"]
    assert "paddle_inference" not in predictor.choices["image"].failed
