"""Every refusal the package verifier can raise, one class per reason.

Callers catch :class:`PackageRefused` to treat any refusal alike, or a subclass to react to one
reason. ``exit_code`` is what ``tools/package.py`` exits with, grouped so deploy scripts can tell
"tampered or untrusted" (10) from "policy" (11), "content" (12), "stale or replayed" (13) and
"cannot decrypt" (14). Usage and key/configuration problems are not refusals: they raise
:class:`PackageConfigError` (exit 3).
"""

from __future__ import annotations

SHOW_LIMIT = 120  # characters of one untrusted value shown in a message


def show(value: object, limit: int = SHOW_LIMIT) -> str:
    """``value`` as an ASCII-only quoted literal, cut to ``limit`` characters: how untrusted text (paths,
    names, key ids, user IDs from a package) appears in messages, so no newline, ESC or bidi control
    from a package reaches a terminal or a log line."""
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def one_line(message: str) -> str:
    """``message`` with every control or format character (newline, ESC, bidi overrides) escaped."""
    if all(c.isprintable() for c in message):
        return message
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)


class _OneLine:
    """Messages are single lines without control characters, whatever went into them."""

    def __init__(self, message: object = "", *args: object) -> None:
        super().__init__(one_line(str(message)), *args)


class PackageConfigError(_OneLine, ValueError):
    """The caller's input is wrong (bad key file, passphrase, option): not a verdict on a package."""

    exit_code = 3


class PackageRefused(_OneLine, Exception):
    """Base class: the package was refused and nothing from it may be loaded."""

    exit_code = 1


# --- 10: budget: what is read before the signature verifies is bounded ----------------------


class BudgetExceededError(PackageRefused):
    """An input is over the reader's hard budget (manifest, signature or key-file size, JSON depth,
    entry count, path length or depth, directory depth): refused before it is parsed any further."""

    exit_code = 10


# --- 10: origin (signature and trust) -------------------------------------------------------


class UnsignedPackageError(PackageRefused):
    """The manifest or its signature is missing: an unsigned (or stripped) package."""

    exit_code = 10


class MalformedManifestError(PackageRefused):
    """The manifest is not the canonical, well-formed document this verifier accepts."""

    exit_code = 10


class UntrustedKeyError(PackageRefused):
    """The signer's key is not among the locally configured trust anchors (or the anchor expired)."""

    exit_code = 10


class WrongUserIdError(PackageRefused):
    """The SM2 user ID in the manifest differs from the one configured for the trust anchor."""

    exit_code = 10


class BadSignatureError(PackageRefused):
    """The SM2 signature does not verify over the manifest bytes."""

    exit_code = 10


# --- 11: policy -----------------------------------------------------------------------------


class AlgorithmError(PackageRefused):
    """The manifest names an algorithm or format version outside the allow-list."""

    exit_code = 11


class PickleRefusedError(PackageRefused):
    """A file is a pickle (by name or by content); pickle runs code on load and is refused by policy."""

    exit_code = 11


class FormatPolicyError(PackageRefused):
    """A file type outside the allow-list (safetensors, Paddle inference files, text/config files)."""

    exit_code = 11


class UnsafePathError(PackageRefused):
    """Base for manifest paths that could escape the package directory or alias another entry."""

    exit_code = 11


class PathTraversalError(UnsafePathError):
    """A path with a ``..``, ``.`` or empty component."""


class AbsolutePathError(UnsafePathError):
    """An absolute path (``/x``, ``C:\\x``, ``\\\\server\\x``)."""


class DuplicatePathError(UnsafePathError):
    """Two entries that are equal after case folding / Unicode normalisation."""


class SymlinkError(PackageRefused):
    """A symbolic link inside the package directory."""

    exit_code = 11


class NotARegularFileError(PackageRefused):
    """A FIFO, device, socket or other non-regular file inside the package directory."""

    exit_code = 11


class UnreadableFileError(PackageRefused):
    """A file or directory inside the package cannot be opened or read (permissions, I/O error)."""

    exit_code = 12


# --- 12: content ----------------------------------------------------------------------------


class MissingFileError(PackageRefused):
    """A file listed in the manifest is not in the directory."""

    exit_code = 12


class ExtraFileError(PackageRefused):
    """A file in the directory is not listed in the manifest."""

    exit_code = 12


class RenamedFileError(PackageRefused):
    """Listed files are missing while unlisted ones are present: files were renamed or swapped."""

    exit_code = 12


class SizeMismatchError(PackageRefused):
    """A file's size differs from the manifest (truncated or extended)."""

    exit_code = 12


class DigestMismatchError(PackageRefused):
    """A chunk's SM3 digest differs from the manifest (content modified)."""

    exit_code = 12


# --- 13: freshness and replay ---------------------------------------------------------------


class ModelMismatchError(PackageRefused):
    """The manifest is for another model than the one asked for (replay of another model's package)."""

    exit_code = 13


class RollbackError(PackageRefused):
    """The sequence number is older than the highest one already accepted for this model."""

    exit_code = 13


class ExpiredError(PackageRefused):
    """The package's expiry time has passed."""

    exit_code = 13


# --- 14: decryption -------------------------------------------------------------------------


class EncryptedPackageError(PackageRefused):
    """The package is encrypted and no recipient key was given, so its contents cannot be checked."""

    exit_code = 14


class MalformedKeysError(PackageRefused):
    """``PACKAGE.keys`` is not the canonical, well-formed key file (types, sizes, fields)."""

    exit_code = 14


class WrongDecryptionKeyError(PackageRefused):
    """The given key is not a recipient of this package, or the wrapped data key fails to unwrap."""

    exit_code = 14


class TruncatedSegmentError(PackageRefused):
    """An encrypted file ends early: segments are missing or cut."""

    exit_code = 14


class SegmentOrderError(PackageRefused):
    """An encrypted segment sits at the wrong position (segments reordered)."""

    exit_code = 14


class SegmentAuthError(PackageRefused):
    """An encrypted segment fails SM4-GCM authentication (ciphertext or header modified)."""

    exit_code = 14
