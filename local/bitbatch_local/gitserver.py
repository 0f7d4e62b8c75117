"""Git smart-HTTP server on 127.0.0.1 that runs the real `git http-backend`.

The URL path `/<workspace>/<slug>.git/...` serves the repository at
`<root>/<workspace>/<slug>` (a normal repository with a `.git` folder, or a
bare one without suffix) or at `<root>/<workspace>/<slug>.git` (a bare one),
like a Bitbucket Cloud clone URL. Basic auth follows Bitbucket access tokens:
the user name is the literal `x-token-auth` and the password is the token.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO
from urllib.parse import unquote

logger = logging.getLogger(__name__)

REALM = "bitbatch"

# User name that Bitbucket Cloud expects in front of a repository, project or
# workspace access token.
ACCESS_TOKEN_USERNAME = "x-token-auth"

COPY_CHUNK_SIZE = 64 * 1024
MAX_LINE_LENGTH = 64 * 1024
MAX_STDERR_BYTES = 64 * 1024
# A chunked request body larger than this moves from memory to a temporary file.
SPOOL_MEMORY_LIMIT = 1024 * 1024

# Seconds to wait for `git http-backend` to exit once its output has ended.
BACKEND_EXIT_TIMEOUT = 30

# Seconds that reading the statistics waits for requests still in progress.
STATISTICS_WAIT_TIMEOUT = 10

# Accepted workspace IDs and repository slugs: letters, digits, `.`, `_` and
# `-`, without a leading dot so that `.` and `..` never name a folder.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
# Bitbucket Cloud clone URLs look like /<workspace>/<slug>.git, Data Center ones
# like /scm/<project>/<slug>.git; both reach <root>/<workspace or project>/<slug>.
REPOSITORY_URL_PATTERN = re.compile(r"(?:/scm)?/(?P<workspace>[^/]+)/(?P<slug>[^/]+?)\.git(?P<service_path>/.*)")
# Service paths of the smart and dumb protocols: info/refs, git-upload-pack,
# git-receive-pack, HEAD, objects/... No segment starts with a dot, so none is `..`.
SERVICE_PATH_PATTERN = re.compile(r"(/[A-Za-z0-9_][A-Za-z0-9._-]*)+")
# A `Git-Protocol` header such as `version=2` or `version=2:key=value`.
GIT_PROTOCOL_PATTERN = re.compile(r"[A-Za-z0-9=:._-]{1,256}")
# Request body encodings that `git http-backend` reads: it inflates gzip and
# x-gzip, and takes anything else as plain bytes.
SUPPORTED_CONTENT_ENCODINGS = {"", "identity", "gzip", "x-gzip"}


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it, without credentials."""

    method: str
    path: str
    query: str
    status: int
    user: str | None
    git_protocol: str | None
    content_encoding: str | None
    chunked: bool
    bytes_sent: int


class GitServer:
    """Serve every repository under `root` over git smart HTTP on 127.0.0.1.

    Auth is off when `username` is None. Otherwise every request needs Basic
    credentials equal to `username` and `password`, or gets 401. Pushes are
    rejected with 403 unless `allow_push` is true. `git_config` adds
    configuration for the backend, for example `{"uploadpack.allowFilter":
    "true"}`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        username: str | None = None,
        password: str | None = None,
        *,
        port: int = 0,
        allow_push: bool = False,
        git_config: Mapping[str, str] | None = None,
        api_recorder=None,
    ) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"Repository root {self.root} is not a folder: create it or pass another root")

        if (username is None) != (password is None):
            raise ValueError("Set both username and password to switch auth on, or neither to switch it off")
        if username is not None and ":" in username:
            raise ValueError(f"Invalid username {username!r}: Basic auth user names cannot contain ':'")
        self._username = username
        self._password = password

        git = shutil.which("git")
        if git is None:
            raise FileNotFoundError("git not found on PATH: install git 2.31 or later")
        self._git = git

        # Handles Bitbucket's build-status REST paths instead of git, when set (see bitbucket_api.py).
        self.api_recorder = api_recorder
        self._requested_port = port
        self._allow_push = allow_push
        self._backend_config = self._build_backend_config(git_config or {})

        # A handler records its request only after the client has the whole
        # response, so readers wait on this for requests in progress.
        self._statistics_changed = threading.Condition()
        self._requests_in_progress = 0
        self._requests: list[RequestRecord] = []
        self._bytes_sent = 0
        self._httpd: _GitHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _build_backend_config(self, git_config: Mapping[str, str]) -> dict[str, str]:
        config = {"http.receivepack": "true" if self._allow_push else "false"}
        if self._allow_push:
            # Served repositories are usually normal ones with `main` checked
            # out, and git rejects a push to the checked-out branch by default.
            config["receive.denyCurrentBranch"] = "updateInstead"
        config.update(git_config)
        return config

    # Lifecycle

    def start(self) -> GitServer:
        if self._httpd is not None:
            raise RuntimeError(f"Git server is already running at {self.base_url}")

        self._httpd = _GitHTTPServer(("127.0.0.1", self._requested_port), _GitRequestHandler, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"git-server-{self.port}",
            daemon=True,
        )
        self._thread.start()

        logger.info("Git server started at %s for repositories under %s", self.base_url, self.root)
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return

        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        logger.info("Git server stopped at %s", self.base_url)

        self._httpd = None
        self._thread = None

    def __enter__(self) -> GitServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Addresses

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("Git server is not running: call start() or use it in a with block")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def clone_url(self, full_name: str) -> str:
        """Return the clone URL of `workspace/slug`, without credentials."""
        workspace, _, slug = full_name.partition("/")
        if not NAME_PATTERN.fullmatch(workspace) or not NAME_PATTERN.fullmatch(slug):
            raise ValueError(f"Invalid repository full name {full_name!r}: expected 'workspace/slug'")
        return f"{self.base_url}/{workspace}/{slug}.git"

    # Statistics

    @property
    def requests(self) -> list[RequestRecord]:
        """GET and POST requests served so far, in the order they finished.

        Waits up to STATISTICS_WAIT_TIMEOUT seconds for requests in progress.
        """
        with self._statistics_changed:
            self._wait_for_requests_in_progress()
            return list(self._requests)

    @property
    def bytes_sent(self) -> int:
        """Response body bytes sent so far, without HTTP headers and chunk framing.

        Waits up to STATISTICS_WAIT_TIMEOUT seconds for requests in progress.
        """
        with self._statistics_changed:
            self._wait_for_requests_in_progress()
            return self._bytes_sent

    def reset_statistics(self) -> None:
        with self._statistics_changed:
            self._wait_for_requests_in_progress()
            self._requests.clear()
            self._bytes_sent = 0

    def _wait_for_requests_in_progress(self) -> None:
        finished = self._statistics_changed.wait_for(
            lambda: self._requests_in_progress == 0, timeout=STATISTICS_WAIT_TIMEOUT
        )
        if not finished:
            logger.warning(
                "%d requests still in progress after %s s, statistics leave them out",
                self._requests_in_progress,
                STATISTICS_WAIT_TIMEOUT,
            )

    def _begin_request(self) -> None:
        with self._statistics_changed:
            self._requests_in_progress += 1

    def _record(self, record: RequestRecord) -> None:
        with self._statistics_changed:
            self._requests.append(record)
            self._bytes_sent += record.bytes_sent
            self._requests_in_progress -= 1
            self._statistics_changed.notify_all()

    # Request checks

    @property
    def auth_enabled(self) -> bool:
        return self._username is not None

    def _authenticate(self, authorization: str | None) -> str | None:
        """Return the user name from valid Basic credentials, or None."""
        if self._username is None or self._password is None:
            return None
        if not authorization:
            return None

        scheme, _, encoded = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None

        username, separator, password = decoded.partition(":")
        if not separator:
            return None
        # Compare both parts every time, in constant time, so the response
        # time does not tell which part was wrong.
        username_matches = hmac.compare_digest(username.encode(), self._username.encode())
        password_matches = hmac.compare_digest(password.encode(), self._password.encode())
        if username_matches and password_matches:
            return username
        return None

    def _resolve_path_info(self, url_path: str) -> str | None:
        """Map `/<workspace>/<slug>.git/<service>` to PATH_INFO under the root, or None."""
        match = REPOSITORY_URL_PATTERN.fullmatch(url_path)
        if match is None:
            return None

        workspace = match["workspace"]
        slug = match["slug"]
        service_path = match["service_path"]
        if not NAME_PATTERN.fullmatch(workspace) or not NAME_PATTERN.fullmatch(slug):
            return None
        if not SERVICE_PATH_PATTERN.fullmatch(service_path):
            return None

        # `git http-backend` looks for `<dir>/.git`, then `<dir>`, so PATH_INFO
        # names the folder without suffix for normal repositories.
        plain_folder = self.root / workspace / slug
        if (plain_folder / ".git").exists() or (plain_folder / "HEAD").is_file():
            return f"/{workspace}/{slug}{service_path}"

        bare_folder = self.root / workspace / f"{slug}.git"
        if (bare_folder / "HEAD").is_file():
            return f"/{workspace}/{slug}.git{service_path}"

        return None

    def _backend_environment(
        self,
        *,
        method: str,
        path_info: str,
        query: str,
        client_address: str,
        user: str | None,
        headers: Mapping[str, str],
        content_length: int,
    ) -> dict[str, str]:
        """Build the CGI environment of one `git http-backend` run."""
        environment = {
            "PATH": os.environ.get("PATH", os.defpath),
            # The backend reads no system or personal configuration, so the
            # server behaves the same on every machine.
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": method,
            "PATH_INFO": path_info,
            "QUERY_STRING": query,
            "REMOTE_ADDR": client_address,
        }

        for index, (key, value) in enumerate(self._backend_config.items()):
            environment[f"GIT_CONFIG_KEY_{index}"] = key
            environment[f"GIT_CONFIG_VALUE_{index}"] = value
        environment["GIT_CONFIG_COUNT"] = str(len(self._backend_config))

        content_type = headers.get("Content-Type")
        if content_type:
            environment["CONTENT_TYPE"] = content_type
        environment["CONTENT_LENGTH"] = str(content_length)
        # The backend inflates a gzip body itself when this is set.
        content_encoding = headers.get("Content-Encoding")
        if content_encoding:
            environment["HTTP_CONTENT_ENCODING"] = content_encoding
        if user is not None:
            environment["REMOTE_USER"] = user

        # Protocol v2 needs the client's `Git-Protocol` header as GIT_PROTOCOL.
        git_protocol = headers.get("Git-Protocol")
        if git_protocol and GIT_PROTOCOL_PATTERN.fullmatch(git_protocol):
            environment["GIT_PROTOCOL"] = git_protocol

        return environment


class _GitHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        git_server: GitServer,
    ) -> None:
        self.git_server = git_server
        super().__init__(address, handler)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            # A client closing a kept-alive connection is routine.
            logger.debug("Connection from %s ended: %s", client_address[0], error)
            return
        logger.exception("Request from %s failed", client_address[0])


class _RequestBodyError(Exception):
    """The request body is malformed, for example a bad chunk size line."""


class _GitRequestHandler(BaseHTTPRequestHandler):
    # With HTTP/1.1 the connection stays open between the requests of one
    # fetch, and the base class sends `100 Continue` when a client expects it.
    protocol_version = "HTTP/1.1"
    server: _GitHTTPServer

    def do_GET(self) -> None:
        self._handle_request()

    def do_POST(self) -> None:
        self._handle_request()

    def log_message(self, format: str, *args: object) -> None:
        # The request line contains no credentials, but one line per request
        # would flood the output of tests and benchmarks.
        logger.debug("%s %s", self.address_string(), format % args)

    def _handle_request(self) -> None:
        git_server = self.server.git_server
        git_server._begin_request()
        raw_path, _, query = self.path.partition("?")
        url_path = unquote(raw_path)
        git_protocol = self.headers.get("Git-Protocol")
        user: str | None = None
        status = 500
        bytes_sent = 0

        try:
            # Bitbucket's REST build-status calls go to the recorder, when one is set.
            if git_server.api_recorder is not None and git_server.api_recorder.matches(url_path):
                status, bytes_sent = git_server.api_recorder.handle(self, url_path)
                return

            if git_server.auth_enabled:
                user = git_server._authenticate(self.headers.get("Authorization"))
                if user is None:
                    logger.info("Rejected %s %s: missing or invalid credentials", self.command, url_path)
                    status, bytes_sent = self._send_error_response(
                        401,
                        "Missing or invalid credentials\n",
                        {"WWW-Authenticate": f'Basic realm="{REALM}"'},
                    )
                    return

            path_info = git_server._resolve_path_info(url_path)
            if path_info is None:
                logger.info("Rejected %s %s: no repository at this path", self.command, url_path)
                status, bytes_sent = self._send_error_response(404, f"Repository not found: {url_path}\n")
                return

            status, bytes_sent = self._run_backend(git_server, path_info, query, user)
        finally:
            git_server._record(
                RequestRecord(
                    method=self.command,
                    path=url_path,
                    query=query,
                    status=status,
                    user=user,
                    git_protocol=git_protocol,
                    content_encoding=self.headers.get("Content-Encoding"),
                    chunked=self.headers.get("Transfer-Encoding", "").strip().lower() == "chunked",
                    bytes_sent=bytes_sent,
                )
            )

    # Request body

    def _body_reader(self) -> tuple[int, Callable[[IO[bytes]], None] | None]:
        """Return the body's length and a function that copies the body, or None if it is empty."""
        transfer_encoding = self.headers.get("Transfer-Encoding", "").strip().lower()
        if transfer_encoding == "chunked":
            return self._spool_chunked_body()
        if transfer_encoding:
            raise _RequestBodyError(
                f"Unsupported Transfer-Encoding {transfer_encoding!r}: send chunked or Content-Length"
            )

        content_length_header = self.headers.get("Content-Length")
        if content_length_header is None:
            return 0, None
        try:
            content_length = int(content_length_header)
        except ValueError:
            raise _RequestBodyError(f"Invalid Content-Length {content_length_header!r}: expected a number") from None
        if content_length < 0:
            raise _RequestBodyError(f"Invalid Content-Length {content_length}: expected 0 or more")

        def copy_fixed_length_body(target: IO[bytes]) -> None:
            remaining = content_length
            while remaining > 0:
                chunk = self.rfile.read(min(COPY_CHUNK_SIZE, remaining))
                if not chunk:
                    raise _RequestBodyError(f"Request body ended {remaining} bytes before its Content-Length")
                target.write(chunk)
                remaining -= len(chunk)

        return content_length, copy_fixed_length_body

    def _spool_chunked_body(self) -> tuple[int, Callable[[IO[bytes]], None]]:
        """Decode the whole chunked body first, so a malformed one gets 400 and the backend a CONTENT_LENGTH."""
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_LIMIT)
        try:
            self._copy_chunked_body(spool)
        except BaseException:
            spool.close()
            raise
        body_length = spool.tell()
        spool.seek(0)

        def copy_spooled_body(target: IO[bytes]) -> None:
            with spool:
                shutil.copyfileobj(spool, target, COPY_CHUNK_SIZE)

        return body_length, copy_spooled_body

    def _copy_chunked_body(self, target: IO[bytes]) -> None:
        while True:
            size_line = self.rfile.readline(MAX_LINE_LENGTH + 1)
            if not size_line.endswith(b"\n"):
                raise _RequestBodyError("Chunk size line is missing or too long")
            size_text = size_line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _RequestBodyError(f"Invalid chunk size {size_text!r}") from None

            if size == 0:
                break

            remaining = size
            while remaining > 0:
                data = self.rfile.read(min(COPY_CHUNK_SIZE, remaining))
                if not data:
                    raise _RequestBodyError("Request body ended inside a chunk")
                target.write(data)
                remaining -= len(data)
            if self.rfile.readline(MAX_LINE_LENGTH + 1).strip():
                raise _RequestBodyError("Chunk data is not followed by CRLF")

        # Skip trailer fields up to the empty line that ends the body.
        while True:
            trailer_line = self.rfile.readline(MAX_LINE_LENGTH + 1)
            if not trailer_line.strip():
                break

    def _has_body(self) -> bool:
        if "Transfer-Encoding" in self.headers:
            return True
        content_length = self.headers.get("Content-Length", "0").strip()
        return content_length not in ("", "0")

    # Backend

    def _run_backend(
        self,
        git_server: GitServer,
        path_info: str,
        query: str,
        user: str | None,
    ) -> tuple[int, int]:
        try:
            content_length, copy_body = self._body_reader()
        except _RequestBodyError as error:
            logger.warning("Rejected %s %s: %s", self.command, path_info, error)
            return self._send_error_response(400, f"{error}\n")

        content_encoding = self.headers.get("Content-Encoding", "").strip().lower()
        if content_encoding not in SUPPORTED_CONTENT_ENCODINGS:
            logger.warning("Rejected %s %s: unsupported Content-Encoding %r", self.command, path_info, content_encoding)
            return self._send_error_response(
                415, f"Unsupported Content-Encoding {content_encoding!r}: send gzip or an unencoded body\n"
            )

        environment = git_server._backend_environment(
            method=self.command,
            path_info=path_info,
            query=query,
            client_address=self.client_address[0],
            user=user,
            headers=self.headers,
            content_length=content_length,
        )
        try:
            process = subprocess.Popen(
                [git_server._git, "http-backend"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=environment,
            )
        except OSError as error:
            logger.error("Failed to start git http-backend for %s: %s", path_info, error)
            return self._send_error_response(500, "Failed to start git http-backend\n")

        # The body goes in and stderr comes out on their own threads while
        # this thread streams stdout, so no pipe can fill up and block.
        body_result: list[BaseException | None] = []
        body_thread = threading.Thread(
            target=self._feed_request_body, args=(process.stdin, copy_body, body_result), daemon=True
        )
        stderr_buffer = bytearray()
        stderr_thread = threading.Thread(target=_drain_stderr, args=(process.stderr, stderr_buffer), daemon=True)
        body_thread.start()
        stderr_thread.start()

        status, bytes_sent = 500, 0
        client_disconnected = False
        try:
            status, bytes_sent = self._stream_backend_output(process.stdout)
        except (BrokenPipeError, ConnectionResetError):
            logger.info("Client %s closed the connection during %s", self.client_address[0], path_info)
            client_disconnected = True
            self.close_connection = True
            process.kill()
        finally:
            body_thread.join()
            try:
                process.wait(timeout=BACKEND_EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "git http-backend did not exit within %s s for %s, killing it", BACKEND_EXIT_TIMEOUT, path_info
                )
                process.kill()
                process.wait()
            stderr_thread.join()
            process.stdout.close()

        body_error = body_result[0] if body_result else None
        if body_error is not None:
            # Part of the body may still be unread, so this connection can
            # carry no further request.
            self.close_connection = True
            if not client_disconnected:
                logger.warning("Request body for %s was not fully passed on: %s", path_info, body_error)

        if process.returncode != 0 and not client_disconnected:
            stderr_text = bytes(stderr_buffer).decode("utf-8", "replace").strip()
            logger.warning(
                "git http-backend exited with code %s for %s %s: %s",
                process.returncode,
                self.command,
                path_info,
                stderr_text,
            )

        return status, bytes_sent

    def _feed_request_body(
        self,
        stdin: IO[bytes],
        copy_body: Callable[[IO[bytes]], None] | None,
        result: list[BaseException | None],
    ) -> None:
        error: BaseException | None = None
        try:
            if copy_body is not None:
                copy_body(stdin)
        except (OSError, ValueError, _RequestBodyError) as caught:
            # BrokenPipeError lands here when the backend exits before reading
            # the whole body, for example after a response of 403.
            error = caught
        finally:
            try:
                stdin.close()
            except OSError:
                pass
        result.append(error)

    def _stream_backend_output(self, stdout: IO[bytes]) -> tuple[int, int]:
        """Send the backend's CGI output to the client and return (status, body bytes)."""
        status = 200
        reason: str | None = None
        headers: list[tuple[str, str]] = []
        while True:
            line = stdout.readline(MAX_LINE_LENGTH + 1)
            if not line:
                return self._send_error_response(502, "git http-backend ended without a response\n")
            line = line.rstrip(b"\r\n")
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip()
            value = value.strip()
            if name.lower() == "status":
                code, _, reason = value.partition(" ")
                if not code.isdigit():
                    return self._send_error_response(502, f"git http-backend sent an invalid Status {value!r}\n")
                status = int(code)
            else:
                headers.append((name, value))

        has_content_length = any(name.lower() == "content-length" for name, _ in headers)
        use_chunked = not has_content_length and self.request_version == "HTTP/1.1"
        if not has_content_length and not use_chunked:
            # An HTTP/1.0 client learns where the body ends when the
            # connection closes.
            self.close_connection = True

        self.send_response(status, reason or None)
        for name, value in headers:
            self.send_header(name, value)
        if use_chunked:
            self.send_header("Transfer-Encoding", "chunked")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

        bytes_sent = 0
        while chunk := stdout.read1(COPY_CHUNK_SIZE):
            if use_chunked:
                self.wfile.write(b"%X\r\n%s\r\n" % (len(chunk), chunk))
            else:
                self.wfile.write(chunk)
            bytes_sent += len(chunk)
        if use_chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        return status, bytes_sent

    def _send_error_response(
        self,
        status: int,
        message: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> tuple[int, int]:
        """Send a plain-text response that the backend did not produce."""
        body = message.encode("utf-8")
        # The request body, if any, stays unread, so close the connection
        # instead of reading it as the next request.
        if self._has_body():
            self.close_connection = True

        self.send_response(status)
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        return status, len(body)


def _drain_stderr(stderr: IO[bytes], buffer: bytearray) -> None:
    """Read stderr to its end and keep the first MAX_STDERR_BYTES of it."""
    with stderr:
        while chunk := stderr.read(COPY_CHUNK_SIZE):
            room = MAX_STDERR_BYTES - len(buffer)
            if room > 0:
                buffer.extend(chunk[:room])
