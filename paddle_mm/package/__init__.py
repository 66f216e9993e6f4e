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
from .errors import (
    AbsolutePathError,
    AlgorithmError,
    BadSignatureError,
    BudgetExceededError,
    DigestMismatchError,
    DuplicatePathError,
    EncryptedPackageError,
    ExpiredError,
    ExtraFileError,
    FormatPolicyError,
    MalformedKeysError,
    MalformedManifestError,
    MissingFileError,
    ModelMismatchError,
    NotARegularFileError,
    PackageConfigError,
    PackageRefused,
    PathTraversalError,
    PickleRefusedError,
    RenamedFileError,
    RollbackError,
    SegmentAuthError,
    SegmentOrderError,
    SizeMismatchError,
    SymlinkError,
    TruncatedSegmentError,
    UnreadableFileError,
    UnsafePathError,
    UnsignedPackageError,
    UntrustedKeyError,
    WrongDecryptionKeyError,
    WrongUserIdError,
)
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
from .manifest import KEYS_NAME, MANIFEST_NAME, SIGNATURE_NAME, FileEntry, Manifest, decode_manifest
from .trust import RollbackStore, TrustAnchor, TrustStore, default_state_path
from .verify import VerifiedPackage, verify_package

__all__ = [
    "KEYS_NAME",
    "MANIFEST_NAME",
    "SIGNATURE_NAME",
    "AbsolutePathError",
    "AlgorithmError",
    "BadSignatureError",
    "BudgetExceededError",
    "Certificate",
    "Decryptor",
    "DigestMismatchError",
    "DuplicatePathError",
    "EncryptedPackageError",
    "ExpiredError",
    "ExtraFileError",
    "FileEntry",
    "FormatPolicyError",
    "LoadedPackage",
    "LocalDecryptor",
    "LocalSigner",
    "MalformedKeysError",
    "MalformedManifestError",
    "Manifest",
    "MissingFileError",
    "ModelMismatchError",
    "NotARegularFileError",
    "OpenSSLSigner",
    "PackageConfigError",
    "PackageRefused",
    "PathTraversalError",
    "PickleRefusedError",
    "PrivateKey",
    "PublicKey",
    "RenamedFileError",
    "RollbackError",
    "RollbackStore",
    "SegmentAuthError",
    "SegmentOrderError",
    "Signer",
    "SizeMismatchError",
    "SymlinkError",
    "TruncatedSegmentError",
    "TrustAnchor",
    "TrustStore",
    "UnreadableFileError",
    "UnsafePathError",
    "UnsignedPackageError",
    "UntrustedKeyError",
    "VerifiedPackage",
    "WrongDecryptionKeyError",
    "WrongUserIdError",
    "decode_manifest",
    "default_state_path",
    "encrypt_package",
    "hash_tree",
    "load_verified",
    "sign_message",
    "sign_package",
    "verify_package",
]
