"""Load and fault run on loopback: N requests from 16 clients, a share of them malformed, then the checks.

    python benchmarks/load_serving.py --requests 10000 --malformed 0.2            # tiny random model
    python benchmarks/load_serving.py --requests 10000 --deployment output/serve_demo   # the demo model

Malformed kinds, in turn: bad JSON, a body over Limits.max_body_bytes, a file that is not an image, a
decompression bomb (a 64-Mpx PNG of ~60 kB), bad base64, a wrong token, a missing field. Passes (exit 0)
when there is no 5xx, the server never died, and every request id is in the audit log exactly once with an
intact hash chain. Prints counts by status, throughput, latency percentiles and the server's peak RSS
(VmHWM) before shutdown. The server is tools/serve.py in a subprocess, stopped with SIGTERM at the end.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from paddle_mm.serving.testing import peak_rss_mb, requests_plan, run_clients, start_server, tiny_deployment


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--malformed", type=float, default=0.2)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--deployment", help="a directory written by scripts/serve_demo.sh (serve.yml, token)")
    p.add_argument("--port", type=int, default=18431)
    args = p.parse_args()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    from paddle_mm.serving.audit import read_records, verify_chain

    tmp = Path(tempfile.mkdtemp(prefix="load_serving_"))
    if args.deployment:
        config, token, model = (
            Path(args.deployment) / "serve.yml",
            (Path(args.deployment) / "token").read_text(),
            "demo",
        )
    else:
        config, model = tiny_deployment(tmp, args.port), "tiny random-weight CN-CLIP-Tiny (32 px, 1-layer towers)"
        token = (tmp / "token").read_text()
    audit = tmp / "audit" / "audit.log"
    server = start_server(config, f"Server.port={args.port}", f"Audit.path={audit}")
    plan = requests_plan(args.requests, args.malformed)
    results, wall = run_clients(f"http://127.0.0.1:{args.port}", token.strip(), plan, args.clients)
    alive = server.poll() is None
    rss = peak_rss_mb(server.pid) if alive else float("nan")
    server.send_signal(signal.SIGTERM)
    code = server.wait(60)
    statuses = Counter(r[2] for r in results)
    by_kind = Counter((r[1], r[2]) for r in results)
    records = [r for r in read_records(audit) if r["endpoint"] not in ("/healthz", "/readyz")]
    ids = Counter(r["id"] for r in records)
    missing = [r[0] for r in results if ids.get(r[0]) != 1]
    chain = verify_chain(audit)
    lat = np.array([r[3] for r in results if r[2] == 200]) * 1000
    print(f"model: {model}; {args.requests} requests, {args.malformed:.0%} malformed, {args.clients} clients")
    print(
        f"wall {wall:.1f} s, {args.requests / wall:.1f} req/s; 200-latency p50 {np.percentile(lat, 50):.1f} ms "
        f"p99 {np.percentile(lat, 99):.1f} ms"
    )
    print("status counts:", dict(sorted(statuses.items())))
    print("by kind:", {f"{k}:{s}": n for (k, s), n in sorted(by_kind.items())})
    print(f"server alive to the end: {alive}; exit code after SIGTERM: {code}; peak RSS {rss:.0f} MB")
    print(f"audit: {len(records)} records, chain intact over {chain}, request ids missing or doubled: {len(missing)}")
    answered = {r["id"]: r["status"] for r in records}  # what the server sent, even when the client saw a reset
    cut = [r for r in results if r[2] < 0]
    print(
        f"client transport errors: {len(cut)} (kinds {sorted({r[1] for r in cut})}), server answered them "
        f"{sorted({answered.get(r[0]) for r in cut}, key=str)}"
    )
    fives = sum(1 for code in answered.values() if code >= 500) + sum(
        1 for r in cut if "huge" not in r[1] or answered.get(r[0]) != 413
    )
    ok = alive and fives == 0 and not missing and code in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM
    print("PASS" if ok else f"FAIL: {fives} 5xx/transport errors, {len(missing)} unaudited")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
