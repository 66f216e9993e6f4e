"""Faults on loopback, bounded in time: back-pressure, a failing model worker, graceful shutdown, a server
killed mid-load and restarted (audit chain intact)."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from paddle_mm.serving.app import create_app
from paddle_mm.serving.audit import read_records, verify_chain
from paddle_mm.serving.batching import Batcher, DirectRunner, Overloaded

from .conftest import b64, serving_config


def slow(fn, seconds):
    def run(rows):
        time.sleep(seconds)
        return fn(rows)

    return run


def test_batcher_gathers_rows_and_refuses_beyond_the_queue():
    calls = []

    def model(rows):
        calls.append(len(rows))
        time.sleep(0.05)
        return rows * 2

    async def main():
        batcher = Batcher(model, "t", max_batch=8, max_wait_ms=20, queue_size=12)
        jobs = [asyncio.ensure_future(batcher.run(np.full((2, 1), i, np.float32))) for i in range(6)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as err:  # 12 rows queued or running; 2 more do not fit
            for _ in range(3):
                await batcher.run(np.zeros((2, 1), np.float32))
        assert err.value.retry_after >= 1
        out = await asyncio.gather(*jobs)
        batcher.close()
        return out

    out = asyncio.run(main())
    assert [float(o[0, 0]) for o in out] == [2.0 * i for i in range(6)]  # each request got its own rows back
    assert max(calls) > 2, calls  # rows of several requests went through one model call


def test_unbatched_calls_of_a_graph_never_overlap():
    """Batching off is the fair baseline: one model call at a time (each call uses every core already)."""
    state = {"now": 0, "most": 0, "calls": 0}
    lock = threading.Lock()

    def model(rows):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
            state["calls"] += 1
        return rows + 1

    observed = []

    async def main():
        runner = DirectRunner(model, "t", queue_size=64, on_batch=lambda *a: observed.append(a))
        out = await asyncio.gather(*[runner.run(np.full((1, 1), i, np.float32)) for i in range(8)])
        runner.close()
        return out

    out = asyncio.run(main())
    assert [float(o[0, 0]) for o in out] == [i + 1.0 for i in range(8)]
    assert state["calls"] == 8 and state["most"] == 1, state
    assert max(took for _, _, took in observed) < 0.1, observed  # call time, not the wait behind 7 others


def test_overload_answers_429_with_retry_after(deployment, tmp_path):
    cfg = serving_config(deployment, tmp_path, Batching={"max_batch": 1, "queue_size": 2, "max_wait_ms": 0.0})
    app = create_app(cfg)
    runner = app.state.service.model.runners["text"]
    runner.fn = slow(runner.fn, 0.2)

    async def main():
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {deployment['client']}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as client:
            return await asyncio.gather(
                *[client.post("/v1/embeddings/text", json={"texts": [f"圆形{i}"]}) for i in range(8)]
            )

    responses = asyncio.run(main())
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 429 in codes and set(codes) <= {200, 429}, codes
    assert all(int(r.headers["Retry-After"]) >= 1 for r in responses if r.status_code == 429)
    app.state.service.close()
    assert sum(r["status"] == 429 for r in read_records(cfg["Audit"]["path"])) == codes.count(429)


def test_a_failing_model_call_is_a_500_and_the_service_recovers(deployment, tmp_path):
    from fastapi.testclient import TestClient

    cfg = serving_config(deployment, tmp_path)
    app = create_app(cfg)
    runner = app.state.service.model.runners["image"]
    good = runner.fn

    def broken(rows):
        raise RuntimeError("onnxruntime: simulated device failure")

    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {deployment['client']}"
        body = {"images": [b64(deployment["images"][0])]}
        runner.fn = broken
        assert client.post("/v1/embeddings/image", json=body).status_code == 500
        runner.fn = good
        assert client.post("/v1/embeddings/image", json=body).status_code == 200
        assert runner._thread.is_alive()
    statuses = [r["status"] for r in read_records(cfg["Audit"]["path"])]
    assert statuses == [500, 200]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_graceful_shutdown_finishes_in_flight_requests(deployment, tmp_path):
    import uvicorn

    cfg = serving_config(deployment, tmp_path)
    app = create_app(cfg)
    runner = app.state.service.model.runners["text"]
    runner.fn = slow(runner.fn, 0.6)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=10)
    )
    thread = threading.Thread(target=server.run)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    results = []

    def call(i):
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/embeddings/text",
            json={"texts": [f"方形{i}"]},
            headers={"Authorization": f"Bearer {deployment['client']}"},
            timeout=20,
        )
        results.append(r.status_code)

    clients = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for c in clients:
        c.start()
    time.sleep(0.3)  # all four are inside the model call now
    server.should_exit = True  # what uvicorn's SIGTERM handler does
    for c in clients:
        c.join(30)
    thread.join(30)
    assert results == [200] * 4
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    assert app.state.service.draining and not runner._thread.is_alive()
    assert [r["status"] for r in read_records(cfg["Audit"]["path"])] == [200] * 4


def test_server_killed_mid_load_restarts_with_the_audit_chain_intact(tmp_path):
    from paddle_mm.serving.testing import requests_plan, run_clients, start_server, tiny_deployment

    port = free_port()
    config = tiny_deployment(tmp_path, port)
    token = (tmp_path / "token").read_text().strip()
    audit = tmp_path / "audit" / "audit.log"
    server = start_server(config)

    def kill_after_some_records():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not audit.exists() or audit.read_bytes().count(b"\n") < 60):
            time.sleep(0.01)
        server.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_after_some_records)
    killer.start()
    results, _ = run_clients(f"http://127.0.0.1:{port}", token, requests_plan(400, 0.2), 8)
    server.wait(10)
    killer.join()
    assert server.returncode == -signal.SIGKILL
    served = sum(r[2] == 200 for r in results)
    assert 0 < served < 320, __import__("collections").Counter(r[2] for r in results)  # killed part-way
    before = verify_chain(audit)
    server = start_server(config)  # the same package and state: accepted again (same sequence, same manifest)
    try:
        results, _ = run_clients(f"http://127.0.0.1:{port}", token, requests_plan(50, 0.2), 4)
        assert sorted({r[2] for r in results}) == [200, 400, 401, 413, 415, 422]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert verify_chain(audit) == before + 50  # the chain continues across the crash and restart
    ids = {r["id"] for r in read_records(audit)}
    assert all(r[0] in ids for r in results)
