"""The caller's lab: read once in the servicer, passed explicitly everywhere below.

Every stored row belongs to a lab and every query names it. The lab of a call travels in the ``labmesh-lab``
request metadata; the gateway sets it after authenticating the caller (and must overwrite whatever a client sent —
backends trust this header). A call without it belongs to the default lab (``DEFAULT_LAB``, ``default``).

There is deliberately no context variable or other ambient "current lab": a servicer calls :func:`lab_of` and
hands the result to store functions as their first argument, so which lab a query touches is visible in its call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import grpc.aio

from servicekit.errors import InvalidArgument

__all__ = ["LAB_METADATA_KEY", "LAB_PATTERN", "lab_metadata", "lab_of", "validate_lab"]

#: Request metadata key that carries the caller's lab (gRPC metadata keys are lowercase).
LAB_METADATA_KEY = "labmesh-lab"

#: A lab id: lowercase letters, digits and dashes, 1-63 characters, starting with a letter or digit (a DNS label,
#: so it can name Kubernetes namespaces, database schemas and metric labels unchanged).
LAB_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")

_FIELD = f"metadata.{LAB_METADATA_KEY}"


def validate_lab(lab: str, *, field: str = _FIELD) -> str:
    """Return ``lab`` if it is a valid lab id, else raise :class:`InvalidArgument` naming ``field``."""
    if not isinstance(lab, str) or not LAB_PATTERN.fullmatch(lab):
        raise InvalidArgument(
            violations={field: f"{lab!r} is not a lab id: expected 1-63 of [a-z0-9-], not starting with '-'"},
            reason="INVALID_LAB",
        )
    return lab


def lab_of(context: grpc.aio.ServicerContext, default: str) -> str:
    """The lab of the current call: its ``labmesh-lab`` metadata, or ``default`` when absent.

    Raises :class:`InvalidArgument` (field ``metadata.labmesh-lab``) for a malformed value or for two different
    values in one call.
    """
    values = _values(context.invocation_metadata() or ())
    if not values:
        return default
    if len(set(values)) > 1:
        raise InvalidArgument(
            violations={_FIELD: f"sent {len(values)} different labs; send exactly one"},
            reason="INVALID_LAB",
        )
    return validate_lab(values[0])


def lab_metadata(lab: str) -> tuple[tuple[str, str], ...]:
    """Metadata for an outgoing call made on behalf of ``lab``: ``stub.Method(req, metadata=lab_metadata(lab))``."""
    return ((LAB_METADATA_KEY, validate_lab(lab)),)


def _values(metadata: Iterable[tuple[str, str | bytes]]) -> list[str]:
    values = []
    for key, value in metadata:
        if key == LAB_METADATA_KEY:
            values.append(value.decode("ascii", "replace") if isinstance(value, bytes) else value)
    return values
