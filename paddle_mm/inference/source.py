"""Where a predictor's model comes from: an export directory, or an SM-signed package of one.

``tools/infer.py`` and ``tools/predict.py`` both open their model through :func:`open_predictor`, so a package
is verified, refused and reported the same way in each::

    predictor = open_predictor(ModelSource(package="pkg/", trust=["signer.pub"], package_model="cn-clip"))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .predictor import Predictor


@dataclass(frozen=True)
class ModelSource:
    """Exactly one of ``model_dir`` (an export directory) and ``package`` (a signed package of one).

    A package needs ``trust`` (the signers' public keys or certificates) and ``package_model`` (the name it must
    be signed for); ``package_state`` (rollback state file), ``decrypt_key`` (a recipient's private key PEM for
    an encrypted package) and ``passphrase_env`` (the environment variable holding its passphrase) are optional.
    """

    model_dir: str | None = None
    package: str | None = None
    trust: list[str] = field(default_factory=list)
    package_model: str | None = None
    package_state: str | None = None
    decrypt_key: str | None = None
    passphrase_env: str | None = None

    def check(self) -> None:
        """Raise :class:`paddle_mm.package.PackageConfigError` (a ValueError) naming what is missing."""
        from ..package import PackageConfigError

        if bool(self.model_dir) == bool(self.package):
            raise PackageConfigError("give exactly one model source: an export directory or a signed package of one")
        if self.package and not (self.trust and self.package_model):
            raise PackageConfigError(
                f"package {self.package}: needs the signers' public keys (trust) and the model name it was signed "
                "for (package_model)"
            )


def open_predictor(source: ModelSource, **options: Any) -> Predictor:
    """A :class:`Predictor` over ``source``: a package is verified first (a refusal raises its
    :class:`paddle_mm.package.PackageRefused` subclass before any file reaches a runtime). ``options``: the
    Predictor's (backend, precision, device, threads, batch_size)."""
    source.check()
    if source.model_dir:
        return Predictor(source.model_dir, **options)
    return Predictor.from_package_files(
        source.package,
        source.trust,
        model=source.package_model,
        state_file=source.package_state,
        decrypt_key_file=source.decrypt_key,
        passphrase_env=source.passphrase_env,
        **options,
    )


def verified_line(predictor: Predictor) -> str | None:
    """``verified package <model> <version> (sequence N, signer <key id>...)`` for a predictor opened from a
    package, None for an export directory: what the tools print before they run it."""
    m = predictor.manifest
    if m is None:
        return None
    return f"verified package {m.model} {m.version} (sequence {m.sequence}, signer {m.key_id[:16]}...)"
