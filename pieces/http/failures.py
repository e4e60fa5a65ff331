"""What went wrong on one `http.request` hop, in plain words. Main entry: `hop_failure`.

Every failure of the exchange itself (name resolution, connecting, TLS, the HTTP protocol, the
deadline, decompression, the size cap) becomes a `PieceError` whose message names the request
that failed as `METHOD scheme://host[:port]/path` (`Target.display`: the port only when it is not
the scheme's default; never the query string, which may carry keys, nor credentials, which
`parse_target` refuses anyway), then the cause. A hop reached through a redirect also says which
response led there. For example:

    http.request: GET http://127.0.0.1:8080/orders could not connect to 127.0.0.1:8080:
    connection refused (nothing listens on that port, or a firewall rejects connections)

`Progress` is where an exchange is (hop, stage, address). `fetch` and `open_pinned` keep it up to
date, so that a failure, a time-out above all, can say what was going on when it happened.
"""

from __future__ import annotations

import errno
import ssl
from dataclasses import dataclass
from typing import Any, TypeGuard

import httpx

from pieces.base import PieceError
from pieces.http.addresses import IPAddress
from pieces.http.policy import UnresolvableHostError
from pieces.http.transport import (
    BodyTooLargeError,
    ConnectFailedError,
    Stage,
    endpoint,
    ssl_cause,
)
from pieces.http.urls import Target

DETAIL_CHARS = 200
TIMEOUT_HINT = "timeout_seconds covers resolving, connecting, redirects and reading the body"


@dataclass
class Progress:
    """Where an exchange is: the request that failure messages name, and what it was doing.

    Attributes:
        method: the current hop's method (a redirect may have turned POST into GET).
        target: the current hop's URL.
        stage: what the hop is doing.
        address: the checked address being connected to, once connecting has started.
        came_from: the hop that redirected here and its status; `None` on the first hop.
    """

    method: str
    target: Target
    stage: Stage = Stage.RESOLVING
    address: IPAddress | None = None
    came_from: tuple[Target, int] | None = None

    def next_hop(self, method: str, target: Target, came_from: tuple[Target, int] | None) -> None:
        """Start a hop (resolving comes first)."""
        self.method, self.target, self.came_from = method, target, came_from
        self.stage, self.address = Stage.RESOLVING, None

    def enter(self, stage: Stage, address: IPAddress | None = None) -> None:
        """Record a new stage (and the address, when connecting starts)."""
        self.stage = stage
        if address is not None:
            self.address = address

    def request(self) -> str:
        """`GET https://api.example:8443/orders`: method, scheme, host, port, path; no query."""
        return f"{self.method} {self.target.display()}"

    def at(self) -> str:
        """The stage as a phrase, naming the address while connecting and in TLS."""
        if self.address is None or self.stage not in (Stage.CONNECTING, Stage.TLS):
            return self.stage.value
        return f"{self.stage.value} {'to' if self.stage is Stage.CONNECTING else 'with'} " + (
            endpoint(self.address, self.target.port)
        )


def hop_failure(exc: BaseException, progress: Progress, *, timeout: float) -> PieceError:
    """The `PieceError` for anything that went wrong on the current hop.

    Args:
        exc: what was raised: `TimeoutError` (the deadline), an httpx error, or one of
            `UnresolvableHostError`, `ConnectFailedError`, `BodyTooLargeError`.
        progress: the hop, and its stage and address when it failed.
        timeout: the request's deadline in seconds, for time-out messages.

    Returns:
        The error to raise. Its `details` carry `method` and `url` (without query) too.
    """
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return _error(
            progress,
            f"timed out after {timeout:g} s {progress.at()} ({TIMEOUT_HINT})",
            "Timeout",
            retryable=True,
            details={"timeout_seconds": timeout},
        )
    if isinstance(exc, UnresolvableHostError):
        return _error(
            progress,
            f"could not resolve host {exc.host!r}: {exc.cause}",
            exc.error_type,
            retryable=exc.retryable,
            details=exc.details,
        )
    if isinstance(exc, BodyTooLargeError):
        return _error(
            progress,
            f"answered with a body larger than {exc.limit} bytes ({exc.why}); raise "
            "ALTLAS_HTTP_MAX_RESPONSE_BYTES to accept larger responses",
            "ResponseTooLarge",
            retryable=False,
            details={"status": exc.status, "limit_bytes": exc.limit},
        )
    tls = ssl_cause(exc)
    if tls is not None and progress.stage in (Stage.CONNECTING, Stage.TLS):
        return _error(
            progress, f"failed {progress.at()}: {tls_words(tls)}", "TlsError", retryable=False
        )
    if isinstance(exc, ConnectFailedError):
        return _error(progress, connect_words(exc, progress), "ConnectionError", retryable=True)
    if isinstance(exc, httpx.LocalProtocolError):
        return _error(
            progress,
            # httpx's message may quote a header value, which may hold a secret: not repeated.
            "was not sent: httpx refused it (a header name or value, or the method, is not "
            "valid HTTP)",
            "InvalidRequest",
            retryable=False,
        )
    if isinstance(exc, httpx.DecodingError):
        return _error(
            progress,
            f"answered with a body that could not be decompressed ({_detail(exc)})",
            "InvalidResponse",
            retryable=False,
        )
    return _error(progress, broken_words(exc, progress), "ConnectionError", retryable=True)


def too_many_redirects(method: str, first: Target, max_redirects: int) -> PieceError:
    """`TooManyRedirects`, naming the request the workflow made."""
    return PieceError(
        f"http.request: {method} {first.display()} led to more than {max_redirects} redirects; "
        "raise ALTLAS_HTTP_MAX_REDIRECTS or set follow_redirects to false",
        error_type="TooManyRedirects",
        retryable=False,
        details={"method": method, "url": first.display(), "max_redirects": max_redirects},
    )


def reached_by_redirect(error: PieceError, source: Target, status: int) -> PieceError:
    """`error`, saying which redirect response pointed to the hop that failed."""
    error.message = f"{error.message} (the {status} redirect of {source.display()} led here)"
    error.args = (error.message,)
    error.details = {**error.details, "redirected_by": source.display()}
    return error


def _error(
    progress: Progress,
    what: str,
    error_type: str,
    *,
    retryable: bool,
    details: dict[str, Any] | None = None,
) -> PieceError:
    error = PieceError(
        f"http.request: {progress.request()} {what}",
        error_type=error_type,
        retryable=retryable,
        details={"method": progress.method, "url": progress.target.display(), **(details or {})},
    )
    if progress.came_from is not None:
        error = reached_by_redirect(error, *progress.came_from)
    return error


# --- causes in plain words --------------------------------------------------------------------


def tls_words(error: ssl.SSLError) -> str:
    """Why TLS failed: an untrusted, mismatched or expired certificate, or no TLS at all."""
    if isinstance(error, ssl.SSLCertVerificationError):
        message = str(error.verify_message or error.reason or error).rstrip(".")
        code = error.verify_code
        if code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
            return f"the server's certificate does not name this host ({message})"
        if code in (18, 19, 20, 21):  # self-signed, or no trusted issuer
            return f"the server's certificate is not signed by a trusted authority ({message})"
        if code in (9, 10):  # X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED
            return f"the server's certificate is not valid at this time ({message})"
        return f"the server's certificate could not be verified ({message})"
    if error.reason == "WRONG_VERSION_NUMBER":
        return "the server does not speak TLS on that port (plain http?)"
    return f"the TLS handshake failed ({_detail(error)})"


def connect_words(exc: ConnectFailedError, progress: Progress) -> str:
    """`could not connect to 127.0.0.1:8080: connection refused (...)`, every address tried."""
    port = progress.target.port
    causes = [(endpoint(address, port), _os_words(error)) for address, error in exc.attempts]
    if len(causes) == 1:
        ((where, why),) = causes
        text = f"could not connect to {where}: {why}"
    else:
        listed = "; ".join(f"{where}: {why}" for where, why in causes)
        text = f"could not connect to any address of {progress.target.host!r} ({listed})"
    if any(_errno(error) == errno.ECONNREFUSED for _, error in exc.attempts):
        text += " (nothing listens on that port, or a firewall rejects connections)"
    return text


def broken_words(exc: BaseException, progress: Progress) -> str:
    """A connection that broke, or a server that broke the protocol, after connecting."""
    if isinstance(exc, httpx.RemoteProtocolError):
        if progress.stage is Stage.READING:
            return f"got an incomplete or malformed response body ({_detail(exc)})"
        return f"got no valid HTTP response ({_detail(exc)})"
    return f"failed {progress.at()}: {_os_words(exc)}"


_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "the connection was reset by the other side",
    errno.ECONNABORTED: "the connection was aborted",
    errno.EPIPE: "the other side closed the connection",
    errno.ETIMEDOUT: "the connection timed out",
    errno.ENETUNREACH: "the network is unreachable",
    errno.EHOSTUNREACH: "there is no route to the host",
    errno.EADDRNOTAVAIL: "the address cannot be reached from this machine",
}


def _os_words(exc: BaseException) -> str:
    """A socket error in words: known errnos by name, others by the system's own text."""
    code = _errno(exc)
    if code in _ERRNO_WORDS:
        return _ERRNO_WORDS[code]
    tls = ssl_cause(exc)
    if tls is not None:
        return f"TLS failed ({_detail(tls)})"
    for seen in _chain(exc):
        if _socket_error(seen) and seen.strerror:
            return seen.strerror[0].lower() + seen.strerror[1:]
    return _detail(exc)


def _socket_error(exc: BaseException) -> TypeGuard[OSError]:
    """An `OSError` whose `errno` is a system errno (an `ssl.SSLError`'s is an SSL code)."""
    return isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError)


def _errno(exc: BaseException) -> int | None:
    for seen in _chain(exc):
        if _socket_error(seen) and isinstance(seen.errno, int) and seen.errno > 0:
            return seen.errno
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what caused it (httpx -> httpcore -> anyio -> OSError), groups opened."""
    found: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(found) < 20:
        seen = pending.pop(0)
        if any(seen is other for other in found):
            continue
        found.append(seen)
        if isinstance(seen, BaseExceptionGroup):
            pending.extend(seen.exceptions)
        cause = seen.__cause__ or seen.__context__
        if cause is not None:
            pending.append(cause)
    return found


def _detail(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "..."
