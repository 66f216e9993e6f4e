"""The deploy tests reuse the serving tests' signed tiny export (fixtures are not shared across siblings)."""

from tests.serving.conftest import signer, tower_export  # noqa: F401  (fixtures)
