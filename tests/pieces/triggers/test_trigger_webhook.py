"""The `webhook` trigger: its config, `verify_request` per scheme, the `trigger` scope."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from pieces.triggers import (
    PayloadError,
    WebhookConfig,
    WebhookSecretError,
    WebhookTrigger,
    WebhookVerificationError,
    trigger_scope,
    verify_request,
    webhook_scope,
)
from pieces.triggers.event import parse_payload

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
STAMP = str(int(NOW.timestamp()))
BODY = b'{"action":"opened","repository":{"full_name":"acme/shop"}}'
SECRET = "s3cret-value"


def config(verify: dict[str, object], **fields: object) -> WebhookConfig:
    return WebhookConfig.model_validate({"verify": verify, **fields})


def hex_hmac(message: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def slack_headers(stamp: int) -> dict[str, str]:
    return {
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": "v0=" + hex_hmac(f"v0:{stamp}:".encode() + BODY),
    }


class TestConfig:
    @pytest.mark.parametrize(
        ("entry", "message"),
        [
            ({}, "verify\n  Field required"),
            ({"verify": {"scheme": "github"}}, "scheme `github` needs `secret`"),
            ({"verify": {"scheme": "gitlab", "secret": "x"}}, "Input should be 'github', 'stripe'"),
            ({"verify": {"scheme": "none", "secret": "x"}}, "takes no `secret`"),
            ({"verify": {"scheme": "github", "secret": ""}}, "`secret` is empty"),
            (
                {"verify": {"scheme": "github", "secret": "gh", "prefix": "sha256="}},
                "`prefix` is only for scheme `hmac-sha256`, not `github`",
            ),
            (
                {"verify": {"scheme": "hmac-sha256", "secret": "s", "header": "X Sig"}},
                "String should match pattern",
            ),
            (
                {"verify": {"scheme": "hmac-sha256", "secret": "s", "encoding": "base32"}},
                "Input should be 'hex' or 'base64'",
            ),
            ({"verify": {"scheme": "none"}, "tolerance_seconds": 0}, "greater than or equal to 1"),
            ({"verify": {"scheme": "none"}, "url": "/hooks/x"}, "Extra inputs are not permitted"),
        ],
    )
    def test_errors(self, entry: dict[str, object], message: str) -> None:
        with pytest.raises(ValidationError) as caught:
            WebhookConfig.model_validate(entry)
        assert message in str(caught.value)

    def test_spec_example_and_defaults(self) -> None:
        entry = {
            "id": "github",
            "type": "webhook",
            "verify": {"scheme": "github", "secret": "gh_hook"},
            "dedupe_key": "{{ trigger.headers['x-github-delivery'] }}",
            "parameters": {"repo": "{{ trigger.payload.repository.full_name }}"},
            "filter": "{{ trigger.payload.action == 'opened' }}",
        }
        parsed = WebhookTrigger.parse_config(entry)
        assert isinstance(parsed, WebhookConfig)
        assert parsed.tolerance_seconds == 300
        assert parsed.secret_name == "gh_hook"
        assert config({"scheme": "none"}).secret_name is None

    def test_json_schema(self) -> None:
        schema = WebhookTrigger.config_schema()
        assert set(schema["properties"]) == {"verify", "tolerance_seconds"}
        assert schema["required"] == ["verify"]
        verify = schema["$defs"]["VerifyConfig"]
        assert set(verify["properties"]) == {"scheme", "secret", "header", "encoding", "prefix"}
        assert verify["properties"]["scheme"]["enum"] == [
            "github",
            "stripe",
            "standard-webhooks",
            "slack",
            "hmac-sha256",
            "none",
        ]
        assert verify["additionalProperties"] is False
        assert "pattern" in verify["properties"]["header"]

    def test_json_schema_encodes_the_scheme_rules(self) -> None:
        jsonschema = pytest.importorskip("jsonschema")
        validator = jsonschema.Draft202012Validator(WebhookTrigger.config_schema())
        good = [
            {"verify": {"scheme": "none"}},
            {"verify": {"scheme": "slack", "secret": "slack_signing"}, "tolerance_seconds": 60},
            {"verify": {"scheme": "hmac-sha256", "secret": "s", "header": "X-Sig", "prefix": "v="}},
        ]
        bad = [
            {"verify": {"scheme": "github"}},
            {"verify": {"scheme": "none", "secret": "s"}},
            {"verify": {"scheme": "stripe", "secret": "s", "encoding": "hex"}},
        ]
        assert [validator.is_valid(entry) for entry in good] == [True, True, True]
        assert [validator.is_valid(entry) for entry in bad] == [False, False, False]


class TestVerifyRequest:
    @pytest.mark.parametrize(
        ("verify", "headers"),
        [
            (
                {"scheme": "github", "secret": "gh"},
                {"X-Hub-Signature-256": "sha256=" + hex_hmac(BODY)},
            ),
            (
                {"scheme": "stripe", "secret": "st"},
                {"Stripe-Signature": f"t={STAMP},v1={hex_hmac(f'{STAMP}.'.encode() + BODY)}"},
            ),
            ({"scheme": "slack", "secret": "sl"}, slack_headers(int(STAMP))),
            ({"scheme": "hmac-sha256", "secret": "h"}, {"X-Signature": hex_hmac(BODY)}),
        ],
    )
    def test_each_scheme_is_dispatched(
        self, verify: dict[str, object], headers: dict[str, str]
    ) -> None:
        verify_request(config(verify), body=BODY, headers=headers, secrets=[SECRET], now=NOW)
        with pytest.raises(WebhookVerificationError, match="no signature matched"):
            verify_request(
                config(verify), body=BODY + b" ", headers=headers, secrets=[SECRET], now=NOW
            )

    def test_standard_webhooks_published_vector(self) -> None:
        verify_request(
            config({"scheme": "standard-webhooks", "secret": "sw"}),
            body=b'{"test": 2432232314}',
            headers={
                "Webhook-Id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "Webhook-Timestamp": "1614265330",
                "Webhook-Signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            },
            secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            now=datetime.fromtimestamp(1614265330 + 299, UTC),
        )

    def test_tolerance_comes_from_the_config(self) -> None:
        headers = slack_headers(int(NOW.timestamp()) - 100)
        slack = {"scheme": "slack", "secret": "s"}
        verify_request(config(slack), body=BODY, headers=headers, secrets=[SECRET], now=NOW)
        with pytest.raises(WebhookVerificationError, match="100 s old; the tolerance is 60 s"):
            verify_request(
                config(slack, tolerance_seconds=60),
                body=BODY,
                headers=headers,
                secrets=[SECRET],
                now=NOW,
            )

    def test_hmac_options(self) -> None:
        import base64

        digest = base64.b64encode(hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()).decode()
        options = {
            "scheme": "hmac-sha256",
            "secret": "h",
            "header": "X-Acme-Sig",
            "encoding": "base64",
            "prefix": "sha256=",
        }
        verify_request(
            config(options), body=BODY, headers={"x-acme-sig": "sha256=" + digest}, secrets=[SECRET]
        )
        with pytest.raises(WebhookVerificationError, match="header X-Acme-Sig is missing"):
            verify_request(
                config(options), body=BODY, headers={"X-Signature": digest}, secrets=[SECRET]
            )

    def test_none_accepts_anything_and_needs_no_secret(self) -> None:
        verify_request(config({"scheme": "none"}), body=b"anything", headers={}, secrets=[])

    def test_missing_secret_value_is_a_configuration_error(self) -> None:
        with pytest.raises(WebhookSecretError):
            verify_request(
                config({"scheme": "github", "secret": "gh"}),
                body=BODY,
                headers={"X-Hub-Signature-256": "sha256=" + hex_hmac(BODY)},
                secrets=[],
            )

    def test_trigger_class_exposes_it(self) -> None:
        with pytest.raises(WebhookVerificationError, match="github: header X-Hub-Signature-256"):
            WebhookTrigger.verify_request(
                config({"scheme": "github", "secret": "gh"}),
                body=BODY,
                headers={},
                secrets=[SECRET],
            )


class TestScope:
    def test_json_delivery(self) -> None:
        scope = webhook_scope(
            trigger_id="github",
            body=BODY,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                "Authorization": "Bearer do-not-store",
                "Cookie": "session=do-not-store",
            },
            received_at=datetime(2026, 5, 1, 15, 0, tzinfo=datetime.now().astimezone().tzinfo),
        )
        assert set(scope) == {"type", "id", "payload", "headers", "body", "received_at"}
        assert scope["body"] == BODY.decode()
        assert scope["type"] == "webhook"
        assert scope["id"] == "github"
        assert scope["payload"]["repository"]["full_name"] == "acme/shop"
        assert scope["headers"]["x-github-delivery"].startswith("72d3162e")
        assert "authorization" not in scope["headers"]
        assert "cookie" not in scope["headers"]
        assert scope["received_at"].endswith("+00:00")

    def test_slack_form_body(self) -> None:
        body = b"command=%2Fdeploy&text=shop+v2&channel_id=C1&channel_id=C2&empty="
        scope = webhook_scope(
            trigger_id="slack",
            body=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert scope["payload"] == {
            "command": "/deploy",
            "text": "shop v2",
            "channel_id": ["C1", "C2"],
            "empty": "",
        }
        assert scope["body"] == body.decode()

    def test_text_body_is_read_as_body(self) -> None:
        scope = webhook_scope(
            trigger_id="plain",
            body="caf\u00e9 <b>".encode("latin-1"),
            headers={"Content-Type": "text/plain; charset=latin-1"},
        )
        assert scope["payload"] is None
        assert scope["body"] == "caf\u00e9 <b>"
        invalid = webhook_scope(trigger_id="raw", body=b"ok \xff", headers={})
        assert invalid["payload"] is None
        assert invalid["body"] == "ok \ufffd"

    @pytest.mark.parametrize(
        ("content_type", "body", "payload"),
        [
            ("application/json; charset=utf-8", b'{"a": [1, 2]}', {"a": [1, 2]}),
            ("application/vnd.acme+json", b"[true]", [True]),
            ("APPLICATION/JSON", b"  ", None),
            ("text/plain", b"hello", None),
            (None, b'{"not": "parsed"}', None),
            ("application/x-www-form-urlencoded; charset=latin-1", b"n=caf%E9", {"n": "café"}),
            ("application/x-www-form-urlencoded; charset=nonsense", b"n=caf%C3%A9", {"n": "café"}),
            ("application/octet-stream", b"\xff\xfe", None),
        ],
    )
    def test_payload_by_content_type(
        self, content_type: str | None, body: bytes, payload: object
    ) -> None:
        assert parse_payload(body, content_type) == payload

    @pytest.mark.parametrize("body", [b"{not json", b'{"x": NaN}'])
    def test_invalid_json_is_refused(self, body: bytes) -> None:
        with pytest.raises(PayloadError, match="not valid JSON although its content type is"):
            parse_payload(body, "application/json")

    def test_generic_scope(self) -> None:
        scope = trigger_scope(trigger_type="manual", trigger_id="by-hand", received_at=NOW)
        assert scope == {
            "type": "manual",
            "id": "by-hand",
            "payload": None,
            "headers": {},
            "body": None,
            "received_at": "2026-05-01T12:00:00+00:00",
        }
        with pytest.raises(ValueError, match="timezone-aware"):
            trigger_scope(trigger_type="manual", trigger_id="x", received_at=datetime(2026, 1, 1))
