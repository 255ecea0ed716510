"""What `darkscope alerts forward` posts: an alert as a JSON body (darkscope's own layout or a
Slack-compatible message), its HMAC-SHA256 signature and its idempotency key.

Pure functions of the Alert record (``schemas/alert.avsc``), so the receiver's side can be
written and tested from this module alone:

- the body is UTF-8 JSON; ``json``: the record itself (timestamps as ISO 8601 UTC strings);
  ``slack``: ``{"text": ..., "blocks": [...]}`` as Slack's incoming webhooks (and Mattermost,
  Rocket.Chat, Teams' Slack-compatible connectors) take it;
- ``X-Darkscope-Signature: sha256=<hex>`` is HMAC-SHA256 of the exact body bytes with the shared
  secret (the GitHub webhook convention): a receiver recomputes it over the bytes it got and
  compares in constant time (:func:`verify`);
- ``Idempotency-Key`` is :func:`streams.alerts.record_key` (alert id, state, revision): the same
  for a record posted twice (after a forwarder restart), different for an episode's open, updates
  and close, which share ``X-Darkscope-Alert-Id``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any, Literal

from streams.alerts import record_key

__all__ = ["Format", "body", "headers", "sign", "verify"]

Format = Literal["json", "slack"]

SIGNATURE_HEADER = "X-Darkscope-Signature"
KEY_HEADER = "Idempotency-Key"
ALERT_ID_HEADER = "X-Darkscope-Alert-Id"
_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def _slack(alert: dict[str, Any]) -> dict[str, Any]:
    """A Slack message: a one-line fallback text, the message, and the figures as context."""
    evidence = alert.get("evidence") or {}
    state = evidence.get("state", "event")
    severity = str(alert["severity"])
    title = f"{severity.upper()} {alert['kind']} `{alert['key']}`" + (
        f" ({state})" if state != "event" else ""
    )
    start = _jsonable(alert["window_start"])
    end = _jsonable(alert["window_end"])
    figures = ", ".join(f"{k}={v}" for k, v in sorted(evidence.items()))
    return {
        "text": f"{title}: {alert['message']}",
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"{_EMOJI.get(severity, '')} *{title}*\n{alert['message']}",
                },
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"{start} to {end}, `{alert['alert_id']}`"},
                    {"type": "mrkdwn", "text": figures or "-"},
                ],
            },
        ],
    }


def body(alert: dict[str, Any], fmt: Format = "json") -> bytes:
    """The bytes posted for ``alert``: the record as JSON, or a Slack message."""
    doc = _slack(alert) if fmt == "slack" else {k: _jsonable(v) for k, v in alert.items()}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def sign(secret: bytes, data: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``data``."""
    return "sha256=" + hmac.new(secret, data, hashlib.sha256).hexdigest()


def verify(secret: bytes, data: bytes, signature: str) -> bool:
    """What a receiver does: recompute the signature over the bytes received, compare in
    constant time."""
    return hmac.compare_digest(sign(secret, data), signature)


def headers(alert: dict[str, Any], data: bytes, secret: bytes | None) -> dict[str, str]:
    """The request headers of one post (no signature without a secret)."""
    out = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "darkscope-alerts-forward",
        KEY_HEADER: record_key(alert),
        ALERT_ID_HEADER: str(alert["alert_id"]),
    }
    if secret is not None:
        out[SIGNATURE_HEADER] = sign(secret, data)
    return out
