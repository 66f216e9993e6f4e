"""Serve a verified model package over HTTP (docs/deploy.md):

    python tools/serve.py -c configs/serving/quickstart.yml [-o Server.port=9000 Batching.enabled=false]
    python tools/serve.py token --tokens /etc/paddle_mm/tokens --name alice [--role admin]   # prints it once

The service starts only when the package passes SM2/SM3 verification (and SM4 decryption where encrypted);
otherwise it prints ``REFUSED <reason>`` and exits with the package tool's code (10-14). SIGTERM finishes
in-flight requests (Server.graceful_timeout_s) before exit; SIGHUP or POST /admin/reload loads a new
package version from Model.package, refused (and the old version kept) unless it verifies and is not older.
"""

import argparse
import logging
import sys

from _common import exit_on_config_error  # puts the repo on sys.path; tunes the CPU before paddle can load
from _errors import EXIT_DATA, fail

from paddle_mm.config import add_config_args, flatten_overrides


def token_command(argv: list[str]) -> int:
    from paddle_mm.serving.auth import TokenFileError, add_token

    p = argparse.ArgumentParser(prog="serve.py token", description="add a token; only its SM3 hash is stored")
    p.add_argument("--tokens", required=True, help="tokens file (created with mode 0600)")
    p.add_argument("--name", required=True, help="who uses it: recorded in the audit log")
    p.add_argument("--role", default="client", choices=("client", "admin"))
    args = p.parse_args(argv)
    try:
        print(add_token(args.tokens, args.name, args.role))
    except TokenFileError as err:
        fail(EXIT_DATA, err)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["token"]:
        return token_command(argv[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    args = p.parse_args(argv)
    import uvicorn

    from paddle_mm.package import PackageRefused
    from paddle_mm.serving.app import StartupRefused, create_app
    from paddle_mm.serving.audit import AuditError
    from paddle_mm.serving.auth import TokenFileError
    from paddle_mm.serving.config import load_serving_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with exit_on_config_error():
        cfg = load_serving_config(args.config, flatten_overrides(args.override))
    try:
        app = create_app(cfg, reload_on_sighup=True)
    except StartupRefused as err:
        print(err, file=sys.stderr)
        cause = err.__cause__
        return cause.exit_code if isinstance(cause, PackageRefused) else 3
    except (TokenFileError, AuditError) as err:
        fail(EXIT_DATA, err)
    server = cfg["Server"]
    uvicorn.run(
        app,
        host=server["host"],
        port=int(server["port"]),
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=int(server["graceful_timeout_s"]),
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
