"""HMAC signatures of provider responses: proof of which provider wrote an answer.

Why: every provider writes to the one responses topic, and Kafka does not record which
principal wrote a record; request ids are derived from the domain's inputs, so they are not
secret. A provider holding a request id of another provider could answer for it. With a key
per provider (shared with flexforce out of band), ``signature`` = HMAC-SHA256 of the response's
canonical form, and the planner refuses a response from a keyed provider whose signature is
missing or wrong (docs/security.md).

The canonical form is the response's JSON data without ``signature`` (envelope id, source,
time and domain included), keys sorted, no spaces — so a signature cannot be replayed onto
another response or another request.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from schemas.providers import CapacityResponded

__all__ = ["canonical_response", "sign_response", "verify_response"]


def canonical_response(response: CapacityResponded) -> bytes:
    """The bytes a provider signs (stable across field order and JSON whitespace)."""
    data = response.model_dump(mode="json", exclude={"signature"})
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_response(response: CapacityResponded, key: bytes) -> str:
    """``hmac-sha256:<hex>`` of the canonical response under ``key``."""
    digest = hmac.new(key, canonical_response(response), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest}"


def verify_response(response: CapacityResponded, key: bytes) -> bool:
    """True when ``response.signature`` is the HMAC of its canonical form under ``key``."""
    if not response.signature:
        return False
    return hmac.compare_digest(response.signature, sign_response(response, key))
