"""``nnsearch dashboard``: optuna-dashboard behind a read-only switch and basic auth.

optuna-dashboard has no authentication and every write route is open: anyone who
reaches it can mark a running trial COMPLETE, delete a study or rewrite notes.
``guard`` wraps its WSGI app: in read-only mode (the default off loopback) every
request but GET/HEAD gets 403; with credentials set, a request without them
gets 401.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
import os
import socket
import ssl
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .artifacts import artifact_store
from .errors import UsageError
from .storage import open_storage
from .storage_url import StorageURL
from .trial_cache import TrialCache

logger = logging.getLogger(__name__)

DASHBOARD_CURVES = 100  # the best and the latest trials' learning curves, in a large study

ENV_USER = "NNSEARCH_DASHBOARD_USER"
ENV_PASSWORD = "NNSEARCH_DASHBOARD_PASSWORD"
SAFE_METHODS = ("GET", "HEAD")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except (OSError, ValueError):
            return False


def credentials_from_env() -> tuple[str, str] | None:
    """Both variables set: basic auth; neither: none; one of them: a UsageError (a
    dashboard that looks protected and is not would be worse than either)."""
    user, password = os.environ.get(ENV_USER, ""), os.environ.get(ENV_PASSWORD, "")
    if user and password:
        return user, password
    if user or password:  # one of them: both empty (as compose passes them) means off
        given, missing = (ENV_USER, ENV_PASSWORD) if user else (ENV_PASSWORD, ENV_USER)
        raise UsageError(f"basic auth is half configured: {given} is set but {missing} is "
                         "empty or unset; set both (non-empty), or unset both.")
    return None


def local_name(name: str, bound: str) -> bool:
    """Whether a Host header's name is this machine as the dashboard is bound to it:
    localhost, any loopback address, or the very name it listens on."""
    if name in ("localhost", bound):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The host of a Host header, without its port (``[::1]:8080`` gives ``::1``)."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def _reply(start_response: Callable[..., Any], status: str, reason: str,
           headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = json.dumps({"reason": reason}).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body))), *(headers or [])])
    return [body]


def guard(app: WSGIApp, read_only: bool, credentials: tuple[str, str] | None,
          loopback_host: str | None = None) -> WSGIApp:
    """Wrap a WSGI app with optional basic auth and a read-only switch. With
    ``loopback_host`` (the loopback address it is bound to), a Host header that does
    not name this machine is refused: a web page the user visits cannot reach a loopback
    dashboard through a rebound DNS name."""
    expected = None
    if credentials is not None:
        expected = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if loopback_host is not None and not local_name(host_name(environ.get("HTTP_HOST", "")),
                                                        loopback_host):
            return _reply(start_response, "403 Forbidden", "this dashboard answers only to "
                          "localhost or a loopback address in the Host header")
        if expected is not None:
            header = environ.get("HTTP_AUTHORIZATION", "")
            scheme, _, token = header.partition(" ")
            ok = False
            if scheme.lower() == "basic":
                try:
                    base64.b64decode(token, validate=True)
                    ok = hmac.compare_digest(token.strip(), expected)
                except (binascii.Error, ValueError):
                    ok = False
            if not ok:
                return _reply(start_response, "401 Unauthorized", "authentication required",
                              [("WWW-Authenticate", 'Basic realm="nnsearch"')])
        if read_only and environ.get("REQUEST_METHOD", "GET").upper() not in SAFE_METHODS:
            return _reply(start_response, "403 Forbidden",
                          "this dashboard is read-only (nnsearch dashboard --read-only)")
        return app(environ, start_response)

    return guarded


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up, or speaks plain HTTP to the TLS port: one debug line,
        # not socketserver's traceback on stderr.
        import sys

        logger.debug("dashboard: request from %s failed: %s", client_address,
                     sys.exc_info()[1])


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("dashboard: " + format, *args)


def make_dashboard(url: StorageURL, read_only: bool, credentials: tuple[str, str] | None,
                   loopback_host: str | None = None) -> WSGIApp:
    import optuna_dashboard

    # (trial_cache.py: on a large study, the learning curves of the best and latest)
    storage = TrialCache(open_storage(url, heartbeat=False), curves=DASHBOARD_CURVES)
    app = optuna_dashboard.wsgi(storage, artifact_store=artifact_store(url))
    return guard(app, read_only, credentials, loopback_host)


def tls_context(certfile: str, keyfile: str | None) -> ssl.SSLContext:
    """A server-side TLS context from a PEM certificate (chain) and its key, or a
    UsageError naming the file that is wrong."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    for name, path in (("--certfile", certfile), ("--keyfile", keyfile)):
        if path is not None and not os.path.isfile(path):
            raise UsageError(f"{name}: no such file: {path}")
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        raise UsageError(f"cannot use --certfile {certfile}"
                         f"{f' and --keyfile {keyfile}' if keyfile else ''}: {exc.reason or exc} "
                         "(both must be PEM, and the key must match the certificate).") from None
    return context


def serve(app: WSGIApp, host: str, port: int,
          tls: ssl.SSLContext | None = None) -> _ThreadingServer:
    server = make_server(host, port, app, server_class=_ThreadingServer,
                         handler_class=_QuietHandler)
    if tls is not None:
        # The handshake runs on the first read, in the request's own thread: a client
        # that never completes it cannot hold up the others.
        server.socket = tls.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    return server
