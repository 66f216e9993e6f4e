"""SM-crypto model packages: SM3 chunked manifests, SM2 signatures, optional SM4-GCM encryption.

Importing this package never imports paddle (only :func:`load_verified` does, when called), so the
verifier CLI starts fast. Typical use::

    from paddle_mm.package import TrustStore, RollbackStore, default_state_path, load_verified
    trust = TrustStore.from_files(["/etc/paddle_mm/signer.pub"])
    pkg = load_verified("/opt/models/cn-clip", trust, model="cn-clip-vit-b-16",
                        state=RollbackStore(default_state_path()))
    model.set_state_dict(pkg.state_dict)

See docs/model_package.md for the format, the checks and their order, and the CLI.
"""

from .build import hash_tree, sign_package
from .encrypt import encrypt_package
from .errors import *  # noqa: F403 - the refusal classes are part of the public API
from .errors import PackageConfigError, PackageRefused
from .keys import (
    Certificate,
    Decryptor,
    LocalDecryptor,
    LocalSigner,
    OpenSSLSigner,
    PrivateKey,
    PublicKey,
    Signer,
    sign_message,
)
from .loading import LoadedPackage, load_verified
from .manifest import MANIFEST_NAME, SIGNATURE_NAME, KEYS_NAME, FileEntry, Manifest, decode_manifest
from .trust import RollbackStore, TrustAnchor, TrustStore, default_state_path
from .verify import VerifiedPackage, verify_package

__all__ = [
    "Certificate", "Decryptor", "FileEntry", "KEYS_NAME", "LoadedPackage", "LocalDecryptor", "LocalSigner",
    "MANIFEST_NAME", "Manifest", "OpenSSLSigner", "PackageConfigError", "PackageRefused", "PrivateKey", "PublicKey",
    "RollbackStore", "SIGNATURE_NAME", "Signer", "TrustAnchor", "TrustStore", "VerifiedPackage", "decode_manifest",
    "default_state_path", "encrypt_package", "hash_tree", "load_verified", "sign_message", "sign_package",
    "verify_package",
]
