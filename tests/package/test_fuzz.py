"""Property-based fuzzing (hypothesis) of everything that reads untrusted package bytes: the pre-signature manifest
reader, the manifest parser, signatures, PACKAGE.keys, safetensors headers and certificates (trust configuration).

Whatever the input, only a refusal escapes (``PackageRefused``; ``PackageConfigError`` for the certificate and
PEM parsers, which read the operator's configuration), and memory stays bounded. Bounded for CI: a fixed number
of examples per target and no example database (``PMM_FUZZ_EXAMPLES`` raises the count for a longer local run;
``PMM_FUZZ_RANDOM=1`` draws new inputs instead of the fixed derandomized sequence).
"""

from __future__ import annotations

import os
import resource
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paddle_mm.package import Certificate, PackageConfigError, PackageRefused, PrivateKey, sm2, verify_package
from paddle_mm.package.encrypt import KeysFile
from paddle_mm.package.keys import pem_blocks
from paddle_mm.package.manifest import (
    MAGIC,
    MANIFEST_NAME,
    check_envelope,
    check_safetensors,
    decode_manifest,
    peek_signer,
)

from .helpers import NOW, make_model, sign
from .test_keys import _certificate

EXAMPLES = int(os.environ.get("PMM_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not os.environ.get("PMM_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
KEY = PrivateKey.generate()
CASES: Counter[str] = Counter()  # examples run per target (printed with -s at the end of the module)
TOKENS = [b"[", b"]", b"{", b"}", b",", b":", b'"', b"\\", b"0", b"-1", b"1e999", b"true", b"null", b"\\ud800",
          b'"files"', b'"signer"', b'"key_id"', b'"user_id"', b'"version"', b'"path"', b'"chunks"', b"\x00", b"\xff"]


def mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """``seed`` with a few byte edits, token insertions, deletions or a long repeated run spliced in."""
    def apply(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
        out = bytearray(data)
        for kind, at, blob in edits:
            at %= len(out) + 1
            if kind == 0:
                out[at:at + 1] = blob[:1]
            elif kind == 1:
                out[at:at] = blob
            else:
                del out[at:at + len(blob) + 1]
        return bytes(out)

    blob = st.one_of(st.sampled_from(TOKENS), st.binary(max_size=16),
                     st.builds(lambda t, n: t * n, st.sampled_from(TOKENS[:6]), st.integers(1, 20_000)))
    return st.builds(apply, st.just(seed), st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 20), blob),
                                                    min_size=1, max_size=4))


def only_refusals(fn, *args, allowed=(PackageRefused,)):
    CASES[getattr(fn, "__qualname__", "?").split(".")[0]] += 1
    try:
        fn(*args)
    except allowed:
        pass


@pytest.fixture(scope="module")
def signed_pkg(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "pkg"
    make_model(root)
    sign(root, KEY)
    return root


@pytest.fixture(scope="module")
def rss_guard():
    """The fuzz run may not grow the process by more than 256 MiB (a parser without a budget allocates GBs)."""
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    yield
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"\nfuzz: {sum(CASES.values())} parser calls in {time.perf_counter() - start:.1f} s, {dict(CASES)}, "
          f"max RSS grew {grown:.0f} MiB")
    assert grown < 256, f"max RSS grew by {grown:.0f} MiB during fuzzing"


def test_manifest_reader_and_parser(signed_pkg, rss_guard) -> None:
    seed = (signed_pkg / MANIFEST_NAME).read_bytes()

    @FUZZ
    @given(st.one_of(mutations(seed), st.binary(max_size=512).map(lambda b: MAGIC + b + b"\n")))
    def run(data: bytes) -> None:
        def parse() -> None:
            check_envelope(data)
            peek_signer(data)
            decode_manifest(data)

        only_refusals(parse)

    run()


def test_verify_with_fuzzed_manifest_and_signature(signed_pkg, tmp_path_factory, rss_guard) -> None:
    """End to end: a fuzzed manifest or signature in a real package, through the verifier."""
    from paddle_mm.package import TrustAnchor, TrustStore

    trust = TrustStore([TrustAnchor(KEY.public_key)])
    work = tmp_path_factory.mktemp("fuzz_e2e")
    import shutil

    shutil.copytree(signed_pkg, work / "pkg")
    manifest, signature = (work / "pkg" / MANIFEST_NAME).read_bytes(), (work / "pkg" / "PACKAGE.sig").read_bytes()

    @FUZZ
    @given(st.booleans(), mutations(manifest), mutations(signature))
    def run(fuzz_manifest: bool, new_manifest: bytes, new_signature: bytes) -> None:
        (work / "pkg" / MANIFEST_NAME).write_bytes(new_manifest if fuzz_manifest else manifest)
        (work / "pkg" / "PACKAGE.sig").write_bytes(signature if fuzz_manifest else new_signature)
        only_refusals(lambda: verify_package(work / "pkg", trust, model="tiny-clip", state=None, now=NOW))

    run()


def test_signature_parser(rss_guard) -> None:
    message = b"paddle_mm"
    good = sm2.signature_to_der(*sm2.sign_digest(KEY.d, sm2.message_digest(message, b"1234567812345678",
                                                                             KEY.public_key.point)))

    @FUZZ
    @given(st.one_of(mutations(good), st.binary(max_size=300)))
    def run(sig: bytes) -> None:
        CASES["signature"] += 1
        assert KEY.public_key.verify(message, sig) in (True, False)  # never raises

    run()


def test_keys_file_parser(rss_guard) -> None:
    seed = KeysFile(1 << 16, {KEY.public_key.key_id: sm2.encrypt(KEY.public_key.point, bytes(16))}).encode()

    @FUZZ
    @given(st.one_of(mutations(seed), st.binary(max_size=512)))
    def run(data: bytes) -> None:
        only_refusals(KeysFile.decode, data)

    run()


def test_safetensors_header_parser(signed_pkg, rss_guard) -> None:
    seed = (signed_pkg / "model.safetensors").read_bytes()[:4096]

    @FUZZ
    @given(mutations(seed), st.integers(0, 1 << 40))
    def run(data: bytes, size: int) -> None:
        only_refusals(check_safetensors, "model.safetensors", data, max(size, len(data)))

    run()


def test_certificate_and_pem_parsers(rss_guard) -> None:
    seed = _certificate(KEY, b"260101000000Z", b"360101000000Z")

    @FUZZ
    @given(st.one_of(mutations(seed), st.binary(max_size=400)))
    def run(der: bytes) -> None:
        only_refusals(Certificate.from_der, der, allowed=(PackageConfigError,))
        pem = b"-----BEGIN CERTIFICATE-----\n" + der + b"\n-----END CERTIFICATE-----\n"
        only_refusals(pem_blocks, pem, allowed=(PackageConfigError,))

    run()
