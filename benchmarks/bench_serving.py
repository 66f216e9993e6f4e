"""Serving throughput and latency under 16 concurrent clients, dynamic batching on against off.

    python benchmarks/bench_serving.py                                   # tiny random-weight model
    python benchmarks/bench_serving.py --deployment output/serve_demo    # the quickstart model (serve_demo.sh)
    python benchmarks/bench_serving.py --arch ViT-B-16 --endpoint text --workdir /tmp/vitb16 --requests 128
                                        # where batching pays on CPU: the ViT-B-16 text tower (export reused)

Each mode runs tools/serve.py in its own process (``-o Batching.enabled=true|false``, same threads) and
``--requests`` requests of one kind (``--endpoint image``: one 64x64 PNG per request to
/v1/embeddings/image; ``text``: one caption to /v1/embeddings/text) from ``--clients`` threads, after 64
warm-up requests. Modes alternate for ``--rounds`` rounds; the table gives each mode's median round and
the throughput ratio (target: batching >= 1.5x). Each round prints the load average before and after it
(the machine may be shared). Both modes call the model one call at a time per graph with the same intra-op
threads (paddle_mm/serving/batching.py), so the ratio is what gathering rows buys, not less oversubscription.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paddle_mm.serving.testing import png_b64, run_clients, start_server, tiny_deployment


def plan(endpoint: str, n: int) -> list:
    if endpoint == "image":
        images = [png_b64(i, 64) for i in range(16)]
        return [("image", "/v1/embeddings/image", {"json": {"images": [images[i % 16]]}}) for i in range(n)]
    return [("text", "/v1/embeddings/text", {"json": {"texts": [f"左上角有{i % 7}个红色的圆形"]}}) for i in range(n)]


def one_round(config: Path, token: str, port: int, batching: bool, args) -> dict:
    server = start_server(
        config,
        f"Server.port={port}",
        f"Batching.enabled={str(batching).lower()}",
        f"Audit.path={Path(tempfile.mkdtemp()) / 'audit.log'}",
    )
    try:
        print(f"    load average {os.getloadavg()[0]:.2f} before the round", flush=True)
        base = f"http://127.0.0.1:{port}"
        run_clients(base, token, plan(args.endpoint, args.warmup), args.clients)  # warm-up
        before = model_time(base, token, args.endpoint)
        results, wall = run_clients(base, token, plan(args.endpoint, args.requests), args.clients)
        calls, rows, seconds = (b - a for a, b in zip(before, model_time(base, token, args.endpoint)))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    print(f"    load average {os.getloadavg()[0]:.2f} at the end of the round", flush=True)
    codes = {r[2] for r in results}
    assert codes == {200}, f"non-200 answers: {codes}"
    ms = np.array([r[3] for r in results]) * 1000
    print(
        f"    {calls:.0f} model calls, {rows / max(calls, 1):.1f} rows per call, "
        f"{seconds / max(calls, 1) * 1000:.0f} ms per call; the model ran {seconds / wall:.0%} of the wall time",
        flush=True,
    )
    return {"rps": args.requests / wall, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def model_time(base: str, token: str, endpoint: str) -> tuple[float, float, float]:
    """(model calls, rows, seconds in the model) so far for the graph, from the server's /metrics: what share of
    the time the model takes, against HTTP, JSON, decoding and tokenization."""
    import httpx

    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10).text
    graph = f'graph="{endpoint}"'

    def value(name: str) -> float:
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name) and graph in line)

    calls, rows = value("paddle_mm_batch_seconds_count"), value("paddle_mm_batch_rows_sum")
    return calls, rows, value("paddle_mm_batch_seconds_sum")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--deployment", help="a scripts/serve_demo.sh output directory (serve.yml, token)")
    p.add_argument("--endpoint", choices=("image", "text"), default="image")
    p.add_argument("--requests", type=int, default=800)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--port", type=int, default=18432)
    p.add_argument(
        "--arch", default="tiny", help="without --deployment: tiny, CN-CLIP-Tiny, ViT-B-16 ... (random weights)"
    )
    p.add_argument("--warmup", type=int, default=64, help="requests before the measured ones")
    p.add_argument("--workdir", help="without --deployment: keep the signed export here and reuse it next time")
    args = p.parse_args()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.deployment:
        config, model = Path(args.deployment) / "serve.yml", f"the model in {args.deployment}"
        token = (Path(args.deployment) / "token").read_text().strip()
    else:
        tmp = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_serving_"))
        reuse = (tmp / "serve.yml").exists() and (tmp / "arch").exists() and (tmp / "arch").read_text() == args.arch
        config = tmp / "serve.yml" if reuse else tiny_deployment(tmp, args.port, args.arch)
        (tmp / "arch").write_text(args.arch)
        model = f"random-weight {args.arch}" + (" (CN-CLIP-Tiny, 32 px, 1-layer towers)" if args.arch == "tiny" else "")
        token = (tmp / "token").read_text().strip()
    runs: dict[bool, list[dict]] = {False: [], True: []}
    for r in range(args.rounds):
        for batching in (False, True):
            runs[batching].append(one_round(config, token, args.port, batching, args))
            x = runs[batching][-1]
            print(
                f"round {r + 1} batching {'on ' if batching else 'off'}: {x['rps']:.1f} req/s, "
                f"p50 {x['p50']:.1f} ms, p99 {x['p99']:.1f} ms",
                flush=True,
            )
    med = {b: {k: statistics.median(x[k] for x in runs[b]) for k in ("rps", "p50", "p99")} for b in runs}
    print(
        f"\n{model}; {args.requests} {args.endpoint} requests, {args.clients} clients, median of {args.rounds} rounds"
    )
    print("| batching | req/s | p50 ms | p99 ms |\n|---|---|---|---|")
    for b in (False, True):
        print(f"| {'on' if b else 'off'} | {med[b]['rps']:.1f} | {med[b]['p50']:.1f} | {med[b]['p99']:.1f} |")
    ratio = med[True]["rps"] / med[False]["rps"]
    print(f"throughput ratio on/off: {ratio:.2f}x (target >= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
