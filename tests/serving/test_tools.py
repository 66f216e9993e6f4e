"""tools/build_index.py (progress, resume, refusals) and tools/serve.py (refuses to start, token command)."""

from __future__ import annotations

import json

import numpy as np

from tests.conftest import SIGNED_MODEL, run_tool, sign_copy


def _build(deployment, data, out, *extra):
    return run_tool(
        "build_index.py",
        "--package",
        str(deployment["package"]),
        "--trust",
        str(deployment["pub"]),
        "--package_model",
        SIGNED_MODEL,
        "--package_state",
        str(out.parent / "state.json"),
        "--data",
        str(data),
        "--split",
        "valid",
        "--out",
        str(out),
        "--threads",
        "1",
        *extra,
        timeout=300,
    )


def test_build_index_with_progress_and_resume(deployment, tiny_data, tmp_path):
    from paddle_mm.serving.gallery import open_gallery

    out = tmp_path / "images"
    proc = _build(deployment, tiny_data, out, "--kind", "image", "--shard", "16")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[build_index] 16/40 images embedded" in proc.stdout and "[build_index] 40/40" in proc.stdout
    gallery = open_gallery(out, expect_model=SIGNED_MODEL)
    first = gallery.search(np.eye(32, dtype=np.float32)[:1], 1)
    gallery.close()
    assert gallery.info["count"] == 40 and not (tmp_path / "images.work").exists()
    # an interrupted run left shard 0 behind: the rerun must reuse it, not recompute it
    work = tmp_path / "images.work"
    work.mkdir()
    marker = np.zeros((16, 32), np.float32)
    marker[:, 0] = 1.0  # every row = e0: recomputed embeddings would not look like this
    job = {
        "model": SIGNED_MODEL,
        "version": "1.0.0",
        "sequence": 1,
        "kind": "image",
        "count": 40,
        "shard": 16,
        "data": str(tiny_data.resolve()),
        "split": "valid",
    }
    (work / "job.json").write_text(json.dumps(job))
    np.save(work / "000000.npy", marker)
    proc = _build(deployment, tiny_data, out, "--kind", "image", "--shard", "16")
    assert proc.returncode == 0, proc.stderr[-2000:]
    gallery = open_gallery(out)
    hits = gallery.search(marker[:1], 20)[0]
    gallery.close()
    assert sum(h.score > 0.9999 for h in hits) == 16, "the resumed build did not reuse the finished shard"
    assert first  # the first build answered a query


def test_build_index_texts_on_milvus_lite(deployment, tiny_data, tmp_path):
    from paddle_mm.serving.gallery import open_gallery

    out = tmp_path / "texts"
    proc = _build(deployment, tiny_data, out, "--kind", "text", "--backend", "milvus")
    assert proc.returncode == 0, proc.stderr[-2000:]
    gallery = open_gallery(out, expect_model=SIGNED_MODEL)
    assert gallery.info["backend"] == "milvus" and gallery.info["count"] > 40
    hit = gallery.search(np.eye(32, dtype=np.float32)[:1], 1)[0][0]
    gallery.close()
    assert isinstance(hit.meta["text"], str) and hit.meta["text_id"] == hit.id


def test_build_index_refuses_a_tampered_package(deployment, tower_export, tiny_data, tmp_path):
    pkg = sign_copy(tower_export, deployment["key"], tmp_path / "pkg", 1, "1.0.0")
    (pkg / "vocab.txt").write_text((pkg / "vocab.txt").read_text().replace("[PAD]", "[PAX]"))
    proc = run_tool(
        "build_index.py",
        "--package",
        str(pkg),
        "--trust",
        str(deployment["pub"]),
        "--package_model",
        SIGNED_MODEL,
        "--package_state",
        str(tmp_path / "s.json"),
        "--data",
        str(tiny_data),
        "--kind",
        "image",
        "--out",
        str(tmp_path / "g"),
    )
    assert proc.returncode == 12 and "REFUSED DigestMismatchError" in proc.stderr, proc.stderr[-1500:]


def test_serve_refuses_to_start_with_the_reason(deployment, tower_export, tmp_path):
    pkg = sign_copy(tower_export, deployment["key"], tmp_path / "pkg", 1, "1.0.0")
    (pkg / "PACKAGE.sig").unlink()
    cfg = tmp_path / "serve.yml"
    cfg.write_text(
        json.dumps(
            {
                "Model": {
                    "package": str(pkg),
                    "name": SIGNED_MODEL,
                    "trust": [str(deployment["pub"])],
                    "state_file": str(tmp_path / "s.json"),
                },
                "Auth": {"tokens_file": str(deployment["tokens"])},
                "Audit": {"path": str(tmp_path / "audit.log")},
            }
        )
    )
    proc = run_tool("serve.py", "-c", str(cfg), timeout=120)
    assert proc.returncode == 10 and "REFUSED UnsignedPackageError" in proc.stderr, proc.stderr[-1500:]
    proc = run_tool("serve.py", "-c", str(cfg), "-o", "Batching.max_bach=3", timeout=60)
    assert proc.returncode == 2 and "did you mean 'max_batch'" in proc.stderr


def test_token_command_stores_only_the_hash(tmp_path):
    from paddle_mm.serving.auth import TokenStore

    proc = run_tool("serve.py", "token", "--tokens", str(tmp_path / "t"), "--name", "bob", timeout=60)
    token = proc.stdout.strip()
    assert proc.returncode == 0 and token.startswith("pmm_") and token not in (tmp_path / "t").read_text()
    assert (tmp_path / "t").stat().st_mode & 0o777 == 0o600
    assert TokenStore.from_file(tmp_path / "t").identify(f"Bearer {token}").name == "bob"
