"""Command line for SM-signed model packages (``tools/package.py``); see docs/model_package.md.

Exit codes (for deploy scripts): 0 ok; 2 bad usage; 3 key, passphrase, trust or I/O problem;
10 origin refused (unsigned, untrusted key, wrong SM2 user ID, bad signature, malformed manifest);
11 policy refused (algorithm, pickle, file type, unsafe path, symlink); 12 content refused
(missing, extra, renamed, resized or modified file); 13 stale or replayed (rollback, expired,
another model's package); 14 cannot decrypt (not a recipient, truncated, reordered or modified
segments).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import sys
from pathlib import Path

from .errors import PackageConfigError, PackageRefused, one_line, show
from .keys import PrivateKey, PublicKey, passphrase_from_env
from .manifest import UTC
from .sm2 import DEFAULT_USER_ID

EXIT_USAGE, EXIT_CONFIG = 2, 3


def _add_passphrase(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--passphrase-env", metavar="VAR", help="environment variable holding the key passphrase")
    g.add_argument("--passphrase-file", metavar="FILE", help="file whose first line is the key passphrase")


def _passphrase(args: argparse.Namespace, prompt: str, confirm: bool = False) -> bytes | None:
    if args.passphrase_env:
        return passphrase_from_env(args.passphrase_env)
    if args.passphrase_file:
        lines = Path(args.passphrase_file).read_bytes()[:65536].splitlines()
        if not lines or not lines[0]:
            raise PackageConfigError(
                f"passphrase file {show(args.passphrase_file)} is empty; its first line is the passphrase"
            )
        return lines[0]
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass(prompt).encode()
    if confirm and getpass.getpass("again: ").encode() != first:
        raise PackageConfigError("the two passphrases differ")
    return first


def _load_private(args: argparse.Namespace, path: str) -> PrivateKey:
    data = Path(path).read_bytes()
    secret = _passphrase(args, f"passphrase for {path}: ") if b"ENCRYPTED" in data else None
    return PrivateKey.from_pem(data, secret)


def _expiry(args: argparse.Namespace) -> dt.datetime | None:
    if args.valid_days is not None:
        return dt.datetime.now(UTC) + dt.timedelta(days=args.valid_days)
    if not args.expires:
        return None
    text = args.expires[:-1] + "+00:00" if args.expires.endswith("Z") else args.expires
    try:
        when = dt.datetime.fromisoformat(text)  # Python < 3.11 does not read a trailing Z
    except ValueError as exc:
        raise PackageConfigError(
            f"--expires {show(args.expires)} is not an ISO 8601 time (2027-06-01T00:00:00Z)"
        ) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def cmd_keygen(args: argparse.Namespace) -> int:
    key = PrivateKey.generate()
    secret = None if args.unencrypted else _passphrase(args, "new key passphrase: ", confirm=True)
    if secret is None and not args.unencrypted:
        raise PackageConfigError(
            "no passphrase given: use --passphrase-env VAR or --passphrase-file FILE, or "
            "--unencrypted to store the key in the clear"
        )
    out = Path(args.out)
    pub = Path(args.pub) if args.pub else out.with_suffix(".pub")
    if os.path.abspath(out) == os.path.abspath(pub):
        raise PackageConfigError(
            f"--out and --pub are the same file {show(str(out))}; give the public key another name"
        )
    files = ((out, key.to_pem(secret, args.iterations), 0o600), (pub, key.public_key.to_pem(), 0o644))
    created: list[Path] = []  # both PEMs are built first, so a bad option leaves no file behind
    try:
        for path, data, mode in files:
            _create_exclusive(path, data, mode)
            created.append(path)
    except BaseException:
        for path in created:
            path.unlink(missing_ok=True)
        raise
    print(f"wrote {out} (private{'' if secret else ', UNENCRYPTED'}) and {pub}; key id {key.public_key.key_id}")
    return 0


def _create_exclusive(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with exactly ``mode`` (whatever the umask); never through a link, never over a file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError as exc:
        raise PackageConfigError(f"{show(str(path))} exists (or is a link); keygen never overwrites a file") from exc
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def cmd_sign(args: argparse.Namespace) -> int:
    from .build import sign_package
    from .keys import LocalSigner, OpenSSLSigner

    if args.signer == "openssl":
        if not args.pub:
            raise PackageConfigError("--signer openssl needs --pub (the signer's public key PEM)")
        signer = OpenSSLSigner(args.key, PublicKey.from_pem(Path(args.pub).read_bytes()), args.passphrase_env)
    else:
        signer = LocalSigner(_load_private(args, args.key))
    manifest = sign_package(
        args.dir,
        signer,
        model=args.model,
        version=args.version,
        sequence=args.sequence,
        expires=_expiry(args),
        user_id=args.user_id.encode(),
        chunk_size=args.chunk_size,
    )
    total = sum(f.size for f in manifest.files)
    print(
        f"signed {manifest.model} {manifest.version} seq {manifest.sequence}: {len(manifest.files)} files, "
        f"{total} bytes, key id {manifest.key_id}"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from .keys import LocalDecryptor
    from .trust import RollbackStore, TrustStore, default_state_path
    from .verify import verify_package

    trust = TrustStore.from_files(args.trust, args.user_id.encode())
    state = None if args.no_state else RollbackStore(args.state or default_state_path())
    decryptor = LocalDecryptor(_load_private(args, args.key)) if args.key else None
    result = verify_package(args.dir, trust, model=args.model, state=state, decryptor=decryptor)
    m = result.manifest
    summary = {
        "model": m.model,
        "version": m.version,
        "sequence": m.sequence,
        "files": len(m.files),
        "bytes": sum(f.size for f in m.files),
        "key_id": m.key_id,
        "manifest_sm3": result.manifest_sm3,
    }
    print(
        json.dumps(summary)
        if args.json
        else one_line(
            f"OK {m.model} {m.version} seq {m.sequence}: {summary['files']} files, {summary['bytes']} bytes verified"
        )
    )
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from . import fsio
    from .errors import UnsignedPackageError
    from .keys import MAX_PEM_BYTES, Certificate, pem_blocks
    from .manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, decode_manifest

    path = Path(args.path)
    if path.is_dir():
        root_fd = fsio.open_root(path)
        try:
            data = fsio.read_small(root_fd, MANIFEST_NAME, MAX_MANIFEST_BYTES)
        finally:
            os.close(root_fd)
        if data is None:
            raise UnsignedPackageError(f"no {MANIFEST_NAME} in {show(str(path))}")
        manifest = decode_manifest(data)
        print("UNVERIFIED manifest (run `verify` before trusting any of this):")
        print(json.dumps(manifest.to_json_dict(), indent=1, ensure_ascii=True))  # no raw control or bidi text
        return 0
    with open(path, "rb") as f:
        pem = f.read(MAX_PEM_BYTES + 1)
    for label, body in pem_blocks(pem):
        if label == "PUBLIC KEY":
            print(f"public key, key id {PublicKey.from_spki_der(body).key_id}")
        elif label == "CERTIFICATE":
            cert = Certificate.from_der(body)
            print(
                f"certificate {show(cert.subject)}, valid {cert.not_before} .. {cert.not_after}, "
                f"key id {cert.public_key.key_id}"
            )
        else:
            print(f"{show(label.lower())} (load it with `sign --key` to see its key id)")
    return 0


def cmd_encrypt(args: argparse.Namespace) -> int:
    from .encrypt import encrypt_package

    recipients = [PublicKey.from_pem(Path(p).read_bytes()) for p in args.recipient]
    keys = encrypt_package(args.src, args.dst, recipients)
    print(f"encrypted {args.src} -> {args.dst} for {len(keys.wrapped)} recipient(s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tools/package.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("keygen", help="generate an SM2 key pair (PKCS#8 PEM, encrypted by default)")
    p.add_argument("--out", required=True, help="private key file to create (mode 0600)")
    p.add_argument("--pub", help="public key file (default: OUT with suffix .pub)")
    p.add_argument("--unencrypted", action="store_true", help="store the private key without a passphrase")
    p.add_argument("--iterations", type=int, default=600_000, help="PBKDF2 iterations (default 600000)")
    _add_passphrase(p)
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("sign", help="hash a model directory and write PACKAGE.manifest + PACKAGE.sig")
    p.add_argument("dir")
    p.add_argument("--key", required=True, help="SM2 private key PEM")
    p.add_argument("--model", required=True, help="model name verifiers will ask for")
    p.add_argument("--version", required=True)
    p.add_argument("--sequence", required=True, type=int, help="must grow with every release of this model")
    exp = p.add_mutually_exclusive_group()
    exp.add_argument("--valid-days", type=float, help="expire this many days from now")
    exp.add_argument("--expires", help="expiry time, ISO 8601 (UTC if no zone)")
    p.add_argument("--user-id", default=DEFAULT_USER_ID.decode(), help="SM2 user ID (default %(default)s)")
    p.add_argument("--chunk-size", type=int, default=4 << 20, help="bytes per SM3 chunk (default 4 MiB)")
    p.add_argument(
        "--signer",
        choices=("local", "openssl"),
        default="local",
        help="sign in-process (default) or with the openssl command line (key stays in OpenSSL)",
    )
    p.add_argument("--pub", help="signer's public key PEM (needed with --signer openssl)")
    _add_passphrase(p)
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("verify", help="verify a package (exit 0 only if every check passes)")
    p.add_argument("dir")
    p.add_argument("--trust", required=True, action="append", help="trusted public key or certificate PEM (repeatable)")
    p.add_argument("--model", required=True, help="the model name this package must be for")
    p.add_argument("--user-id", default=DEFAULT_USER_ID.decode(), help="SM2 user ID the signer uses")
    st = p.add_mutually_exclusive_group()
    st.add_argument(
        "--state",
        help="rollback state file (default $PADDLE_MM_PACKAGE_STATE or "
        "~/.local/state/paddle_mm/package_sequences.json)",
    )
    st.add_argument("--no-state", action="store_true", help="skip rollback protection (not for deployment)")
    p.add_argument("--key", help="recipient private key PEM, for encrypted packages (decrypts in memory only)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON line")
    _add_passphrase(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("inspect", help="print a package's manifest (unverified) or a key/certificate's key id")
    p.add_argument("path")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("encrypt", help="SM4-GCM-encrypt a signed package for SM2 recipients into a new directory")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--recipient", required=True, action="append", help="recipient public key PEM (repeatable)")
    p.set_defaults(func=cmd_encrypt)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PackageRefused as exc:
        print(f"REFUSED {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    except (PackageConfigError, OSError) as exc:  # PackageConfigError messages are one line already
        print(one_line(f"ERROR {type(exc).__name__}: {exc}"), file=sys.stderr)
        return EXIT_CONFIG
