"""Webhook signature verifiers against the providers' published examples, and every way to fail.

Published examples:
- GitHub, "Validating webhook deliveries" (docs.github.com/en/webhooks/using-webhooks/
  validating-webhook-deliveries, "Testing the webhook payload validation").
- Standard Webhooks, the reference libraries' test vector (standard-webhooks/standard-webhooks,
  libraries/python/tests/test_webhooks.py, `test_sign_function`).
- Slack, "Verifying requests from Slack" (api.slack.com/authentication/
  verifying-requests-from-slack), the slash-command example.
- Stripe publishes no vector; ours follows docs.stripe.com/webhooks ("Verify manually"), with the
  digest computed independently by `openssl dgst -sha256 -hmac`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from pieces.triggers.signatures import (
    FailureReason,
    WebhookSecretError,
    WebhookVerificationError,
    verify_github,
    verify_hmac_sha256,
    verify_slack,
    verify_standard_webhooks,
    verify_stripe,
)

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SW_TIMESTAMP = 1614265330
SW_BODY = b'{"test": 2432232314}'
SW_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = 1531420618
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"

STRIPE_SECRET = "whsec_test_secret"
STRIPE_TIMESTAMP = 1700000000
STRIPE_BODY = b'{"id":"evt_test_webhook","object":"event"}'
STRIPE_V1 = "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990"

TOLERANCE = 300


def at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sw_sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(digest.digest()).decode()


def expect_failure(reason: FailureReason, match: str, call: object, **kwargs: object) -> str:
    with pytest.raises(WebhookVerificationError, match=match) as caught:
        call(**kwargs)
    assert caught.value.reason is reason
    return str(caught.value)


class TestGithub:
    def headers(self, signature: str = GITHUB_SIGNATURE) -> dict[str, str]:
        return {"X-Hub-Signature-256": signature, "X-GitHub-Delivery": "72d3162e"}

    def test_published_example_verifies(self) -> None:
        verify_github(body=GITHUB_BODY, headers=self.headers(), secrets=[GITHUB_SECRET])

    def test_header_names_and_hex_case_do_not_matter(self) -> None:
        headers = {"x-hub-signature-256": "sha256=" + GITHUB_SIGNATURE[7:].upper()}
        verify_github(body=GITHUB_BODY, headers=headers, secrets=[GITHUB_SECRET])

    def test_tampered_body_fails_without_leaking_the_expected_signature(self) -> None:
        message = expect_failure(
            FailureReason.NO_MATCHING_SIGNATURE,
            "no signature matched",
            verify_github,
            body=b"Hello, World?",
            headers=self.headers(),
            secrets=[GITHUB_SECRET],
        )
        assert hex_hmac(GITHUB_SECRET, b"Hello, World?") not in message
        assert GITHUB_SECRET not in message

    def test_wrong_secret_fails(self) -> None:
        expect_failure(
            FailureReason.NO_MATCHING_SIGNATURE,
            "checked against 1 secret",
            verify_github,
            body=GITHUB_BODY,
            headers=self.headers(),
            secrets=["not the secret"],
        )

    def test_rotation_old_and_new_secret(self) -> None:
        verify_github(body=GITHUB_BODY, headers=self.headers(), secrets=["new", GITHUB_SECRET])
        verify_github(body=GITHUB_BODY, headers=self.headers(), secrets=[GITHUB_SECRET, "new"])

    def test_missing_header(self) -> None:
        expect_failure(
            FailureReason.MISSING_HEADER,
            "header X-Hub-Signature-256 is missing",
            verify_github,
            body=GITHUB_BODY,
            headers={"X-Hub-Signature": "sha1=0000"},
            secrets=[GITHUB_SECRET],
        )

    @pytest.mark.parametrize(
        "signature",
        [
            GITHUB_SIGNATURE[7:],  # no algorithm
            "sha1=" + GITHUB_SIGNATURE[7:],
            GITHUB_SIGNATURE[:-2],  # too short
            GITHUB_SIGNATURE[:-2] + "zz",  # not hex
            GITHUB_SIGNATURE[:20] + " " + GITHUB_SIGNATURE[21:],  # fromhex would skip spaces
        ],
    )
    def test_malformed_header(self, signature: str) -> None:
        expect_failure(
            FailureReason.MALFORMED_HEADER,
            r"must look like sha256=<64 hex digits>",
            verify_github,
            body=GITHUB_BODY,
            headers=self.headers(signature),
            secrets=[GITHUB_SECRET],
        )


class TestStripe:
    def headers(self, value: str | None = None) -> dict[str, str]:
        return {"Stripe-Signature": value or f"t={STRIPE_TIMESTAMP},v1={STRIPE_V1}"}

    def verify(
        self, headers: dict[str, str], *, body: bytes = STRIPE_BODY, **kwargs: object
    ) -> None:
        options: dict[str, object] = {"secrets": [STRIPE_SECRET], "now": at(STRIPE_TIMESTAMP)}
        options.update(kwargs)
        verify_stripe(body=body, headers=headers, tolerance_seconds=TOLERANCE, **options)

    def test_example_built_per_stripe_docs_verifies(self) -> None:
        assert hex_hmac(STRIPE_SECRET, f"{STRIPE_TIMESTAMP}.".encode() + STRIPE_BODY) == STRIPE_V1
        self.verify(self.headers())

    def test_several_v1_entries_and_v0_are_accepted(self) -> None:
        value = f"t={STRIPE_TIMESTAMP},v1={'0' * 64},v1={STRIPE_V1},v0={'1' * 64}"
        self.verify(self.headers(value))

    def test_rotation_with_candidate_secrets(self) -> None:
        self.verify(self.headers(), secrets=["whsec_new", STRIPE_SECRET])

    def test_tampered_body_and_wrong_secret_fail(self) -> None:
        with pytest.raises(WebhookVerificationError, match="no signature matched"):
            self.verify(self.headers(), body=STRIPE_BODY + b" ")
        with pytest.raises(WebhookVerificationError, match="no signature matched"):
            self.verify(self.headers(), secrets=["whsec_other"])

    def test_timestamp_is_signed(self) -> None:
        # Moving t (to dodge the tolerance) breaks the signature.
        with pytest.raises(WebhookVerificationError, match="no signature matched"):
            self.verify(self.headers(f"t={STRIPE_TIMESTAMP + 1},v1={STRIPE_V1}"))

    def test_tolerance_boundaries(self) -> None:
        self.verify(self.headers(), now=at(STRIPE_TIMESTAMP + TOLERANCE))
        self.verify(self.headers(), now=at(STRIPE_TIMESTAMP - TOLERANCE))
        with pytest.raises(WebhookVerificationError, match="301 s old; the tolerance is 300 s"):
            self.verify(self.headers(), now=at(STRIPE_TIMESTAMP + TOLERANCE + 1))
        with pytest.raises(WebhookVerificationError, match="301 s in the future") as caught:
            self.verify(self.headers(), now=at(STRIPE_TIMESTAMP - TOLERANCE - 1))
        assert caught.value.reason is FailureReason.TIMESTAMP_OUT_OF_TOLERANCE

    @pytest.mark.parametrize(
        ("value", "match"),
        [
            (f"v1={STRIPE_V1}", "exactly one t="),
            (f"t=1,t=2,v1={STRIPE_V1}", "exactly one t="),
            (f"t={STRIPE_TIMESTAMP}", "at least one v1="),
            (f"t={STRIPE_TIMESTAMP},v0={STRIPE_V1}", "at least one v1="),
            (f"t=soon,v1={STRIPE_V1}", "t= must look like a Unix time"),
            (f"t={STRIPE_TIMESTAMP},v1=abc", "must look like t=<unix time>,v1=<64 hex digits>"),
            (f"t={STRIPE_TIMESTAMP};v1={STRIPE_V1}", "must look like"),
        ],
    )
    def test_malformed_header(self, value: str, match: str) -> None:
        with pytest.raises(WebhookVerificationError, match=match) as caught:
            self.verify(self.headers(value))
        assert caught.value.reason is FailureReason.MALFORMED_HEADER

    def test_missing_header(self) -> None:
        with pytest.raises(WebhookVerificationError, match="header Stripe-Signature is missing"):
            self.verify({})


class TestStandardWebhooks:
    def headers(self, signature: str = SW_SIGNATURE, **changes: str) -> dict[str, str]:
        headers = {
            "webhook-id": SW_ID,
            "webhook-timestamp": str(SW_TIMESTAMP),
            "webhook-signature": signature,
        }
        headers.update(changes)
        return headers

    def verify(self, headers: dict[str, str], *, body: bytes = SW_BODY, **kwargs: object) -> None:
        options: dict[str, object] = {"secrets": [SW_SECRET], "now": at(SW_TIMESTAMP)}
        options.update(kwargs)
        verify_standard_webhooks(body=body, headers=headers, tolerance_seconds=TOLERANCE, **options)

    def test_published_test_vector_verifies(self) -> None:
        assert sw_sign(SW_SECRET, SW_ID, SW_TIMESTAMP, SW_BODY) == SW_SIGNATURE
        self.verify(self.headers())

    def test_secret_without_prefix_and_svix_header_names(self) -> None:
        self.verify(self.headers(), secrets=[SW_SECRET.removeprefix("whsec_")])
        svix = {
            "Svix-Id": SW_ID,
            "Svix-Timestamp": str(SW_TIMESTAMP),
            "Svix-Signature": SW_SIGNATURE,
        }
        self.verify(svix)

    def test_case_insensitive_header_names(self) -> None:
        self.verify({name.upper(): value for name, value in self.headers().items()})

    def test_several_signatures_in_the_header(self) -> None:
        # As in the reference tests: bogus v1, another version, the valid one, bogus again.
        bogus = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
        value = f"{bogus} v2,{bogus[3:]} {SW_SIGNATURE} v1,not-base64!! {bogus}"
        self.verify(self.headers(value))

    def test_rotation_old_and_new_secret(self) -> None:
        new = "whsec_" + base64.b64encode(b"n" * 32).decode()
        new_signature = sw_sign(new, SW_ID, SW_TIMESTAMP, SW_BODY)
        # sender signs with both keys while rotating; receiver knows only the new one
        self.verify(self.headers(f"{SW_SIGNATURE} {new_signature}"), secrets=[new])
        # sender still signs with the old key; receiver holds old and new
        self.verify(self.headers(), secrets=[new, SW_SECRET])

    def test_tampered_body_wrong_secret_and_signed_id(self) -> None:
        with pytest.raises(WebhookVerificationError, match="no signature matched") as caught:
            self.verify(self.headers(), body=b'{"test": 2432232315}')
        assert sw_sign(SW_SECRET, SW_ID, SW_TIMESTAMP, b'{"test": 2432232315}')[3:] not in str(
            caught.value
        )
        other = "whsec_" + base64.b64encode(b"o" * 32).decode()
        with pytest.raises(WebhookVerificationError, match="no signature matched"):
            self.verify(self.headers(), secrets=[other])
        with pytest.raises(WebhookVerificationError, match="no signature matched"):
            self.verify(self.headers(**{"webhook-id": "msg_other"}))

    def test_stale_and_future_timestamps(self) -> None:
        for offset, words in [(TOLERANCE + 1, "old"), (-TOLERANCE - 1, "in the future")]:
            timestamp = SW_TIMESTAMP - offset
            signature = sw_sign(SW_SECRET, SW_ID, timestamp, SW_BODY)
            headers = self.headers(signature, **{"webhook-timestamp": str(timestamp)})
            with pytest.raises(WebhookVerificationError, match=words) as caught:
                self.verify(headers)
            assert caught.value.reason is FailureReason.TIMESTAMP_OUT_OF_TOLERANCE

    @pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
    def test_missing_headers(self, missing: str) -> None:
        headers = self.headers()
        del headers[missing]
        with pytest.raises(WebhookVerificationError, match=f"header {missing} is missing"):
            self.verify(headers)

    @pytest.mark.parametrize(
        ("changes", "match"),
        [
            ({"webhook-timestamp": "hello"}, "webhook-timestamp must look like a Unix time"),
            ({"webhook-timestamp": "1614265330.5"}, "must look like a Unix time"),
            ({"webhook-signature": "g0hM9SsE+OTPJTGt"}, r"v1,<base64>"),
            ({"webhook-signature": "v1a,hnO3f9T8Ytu9HwrXslvuml=="}, r"v1,<base64>"),
        ],
    )
    def test_malformed_headers(self, changes: dict[str, str], match: str) -> None:
        with pytest.raises(WebhookVerificationError, match=match) as caught:
            self.verify(self.headers(**changes))
        assert caught.value.reason is FailureReason.MALFORMED_HEADER

    def test_secret_that_is_not_base64_is_a_configuration_error(self) -> None:
        with pytest.raises(WebhookSecretError, match="expected whsec_<base64>") as caught:
            self.verify(self.headers(), secrets=["whsec_not base64!"])
        assert "not base64" not in str(caught.value)


class TestSlack:
    def headers(self, signature: str = SLACK_SIGNATURE, timestamp: int = SLACK_TIMESTAMP) -> dict:
        return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}

    def verify(
        self, headers: dict[str, str], *, body: bytes = SLACK_BODY, **kwargs: object
    ) -> None:
        options: dict[str, object] = {"secrets": [SLACK_SECRET], "now": at(SLACK_TIMESTAMP + 30)}
        options.update(kwargs)
        verify_slack(body=body, headers=headers, tolerance_seconds=TOLERANCE, **options)

    def test_documented_example_verifies(self) -> None:
        self.verify(self.headers())
        self.verify(
            {"x-slack-request-timestamp": "1531420618", "x-slack-signature": SLACK_SIGNATURE}
        )

    def test_rotation_and_failures(self) -> None:
        self.verify(self.headers(), secrets=["new-signing-secret", SLACK_SECRET])
        with pytest.raises(WebhookVerificationError, match="no signature matched"):
            self.verify(self.headers(), body=SLACK_BODY.replace(b"foobar", b"foobaz"))
        with pytest.raises(WebhookVerificationError, match="no signature matched"):
            self.verify(self.headers(), secrets=["new-signing-secret"])

    def test_stale_and_future(self) -> None:
        with pytest.raises(WebhookVerificationError, match="400 s old"):
            self.verify(self.headers(), now=at(SLACK_TIMESTAMP + 400))
        with pytest.raises(WebhookVerificationError, match="400 s in the future"):
            self.verify(self.headers(), now=at(SLACK_TIMESTAMP - 400))

    @pytest.mark.parametrize(
        ("headers", "reason", "match"),
        [
            ({"X-Slack-Signature": SLACK_SIGNATURE}, FailureReason.MISSING_HEADER, "Timestamp"),
            (
                {"X-Slack-Request-Timestamp": "1531420618"},
                FailureReason.MISSING_HEADER,
                "Signature",
            ),
            (
                {"X-Slack-Request-Timestamp": "1531420618", "X-Slack-Signature": "v1=" + "0" * 64},
                FailureReason.MALFORMED_HEADER,
                "v0=<64 hex digits>",
            ),
            (
                {"X-Slack-Request-Timestamp": "-1", "X-Slack-Signature": SLACK_SIGNATURE},
                FailureReason.MALFORMED_HEADER,
                "Unix time",
            ),
        ],
    )
    def test_missing_and_malformed(
        self, headers: dict[str, str], reason: FailureReason, match: str
    ) -> None:
        with pytest.raises(WebhookVerificationError, match=match) as caught:
            self.verify(headers)
        assert caught.value.reason is reason


class TestHmacSha256:
    SECRET = "generic-secret"
    BODY = b'{"event":"ping"}'
    HEX = "adbb938347115a1b87cab58c7bc6980054aec92d3d79c686a74f97cd58a14cfd"  # openssl dgst
    B64 = "rbuTg0cRWhuHyrWMe8aYAFSuyS09ecaGp0+XzVihTP0="

    def verify(
        self, value: str, *, encoding: str = "hex", prefix: str = "", **kwargs: object
    ) -> None:
        options: dict[str, object] = {"secrets": [self.SECRET], "body": self.BODY}
        options.update(kwargs)
        verify_hmac_sha256(
            headers={"x-acme-signature": value},
            header="X-Acme-Signature",
            encoding=encoding,
            prefix=prefix,
            **options,
        )

    def test_hex_base64_and_prefix(self) -> None:
        self.verify(self.HEX)
        self.verify(self.B64, encoding="base64")
        self.verify("sha256=" + self.HEX, prefix="sha256=")
        self.verify(self.HEX, secrets=["old", self.SECRET])

    def test_failures(self) -> None:
        with pytest.raises(WebhookVerificationError, match="no signature matched") as caught:
            self.verify(self.HEX, body=self.BODY + b"\n")
        assert hex_hmac(self.SECRET, self.BODY + b"\n") not in str(caught.value)
        with pytest.raises(WebhookVerificationError, match=r"must look like sha256=<64 hex"):
            self.verify(self.HEX, prefix="sha256=")
        with pytest.raises(WebhookVerificationError, match=r"<base64 digest>"):
            self.verify("%%%", encoding="base64")
        with pytest.raises(WebhookVerificationError, match="header X-Acme-Signature is missing"):
            verify_hmac_sha256(
                body=self.BODY,
                headers={},
                secrets=[self.SECRET],
                header="X-Acme-Signature",
                encoding="hex",
                prefix="",
            )


def test_secrets_must_be_given_and_not_a_plain_string() -> None:
    with pytest.raises(WebhookSecretError, match="set the tenant secret"):
        verify_github(
            body=GITHUB_BODY, headers={"X-Hub-Signature-256": GITHUB_SIGNATURE}, secrets=[]
        )
    with pytest.raises(WebhookSecretError):
        verify_github(
            body=GITHUB_BODY, headers={"X-Hub-Signature-256": GITHUB_SIGNATURE}, secrets=[""]
        )
    with pytest.raises(TypeError, match="not a single string"):
        verify_github(
            body=GITHUB_BODY,
            headers={"X-Hub-Signature-256": GITHUB_SIGNATURE},
            secrets=GITHUB_SECRET,
        )


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_slack(
            body=SLACK_BODY,
            headers={
                "X-Slack-Request-Timestamp": "1531420618",
                "X-Slack-Signature": SLACK_SIGNATURE,
            },
            secrets=[SLACK_SECRET],
            tolerance_seconds=TOLERANCE,
            now=datetime(2018, 7, 12) + timedelta(seconds=1),
        )
