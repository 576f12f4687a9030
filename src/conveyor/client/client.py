"""The batch client: submit, wait, read results; for Conveyor and for Mailchimp alike.

    with Client(api_key) as client:             # https://<dc>.api.mailchimp.com/3.0
        batch = client.submit(operations)
        client.wait(batch.id, timeout=3600, progress=True)
        for result in client.results(batch.id):
            ...

Memory stays flat at any batch size: operations are encoded into a temporary file before they
are sent (so a retry can send them again), and the results archive is streamed to a temporary
file and read one result at a time.
"""

from __future__ import annotations

import builtins
import dataclasses
import email.utils
import gzip
import os
import random
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import quote, urlsplit

import httpx
import orjson
from httpx_sse import EventSource

from conveyor.client.errors import (
    ArchiveError,
    BatchNotFinished,
    ConfigurationError,
    ConveyorApiError,
    ConveyorConnectionError,
    ExtensionUnavailable,
    FieldError,
    InvalidOperation,
    WaitTimeout,
)
from conveyor.client.models import (
    Batch,
    BatchList,
    BatchResult,
    OperationState,
    ProgressUpdate,
    StreamedResult,
    Webhook,
    WebhookList,
)
from conveyor.client.progress import BatchProgress
from conveyor.domain.archive import InvalidArchive, ResultRecord, iter_archive

if TYPE_CHECKING:
    from conveyor.client.dbsync import SyncSummary

ENV_URL = "CONVEYOR_URL"
ENV_API_KEY = "MAILCHIMP_API_KEY"
# Same key and same body: the server answers with the batch it made the first time instead of
# making another one (and says so with Idempotent-Replayed: true).
IDEMPOTENCY_HEADER = "Idempotency-Key"
# The most items one page of a collection holds (Mailchimp's `count` cap, Conveyor's too).
MAX_PAGE_SIZE = 1000
SSE_TYPE = "text/event-stream"
REPLAYED_HEADER = "Idempotent-Replayed"
USER_AGENT = "conveyor-client/0.1"

# Mailchimp documents a 120 s timeout per call; waiting longer for an answer gains nothing.
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_RETRIES = 4
DEFAULT_WAIT_TIMEOUT = 3600.0
DEFAULT_POLL_INTERVAL = 0.5
DEFAULT_MAX_POLL_INTERVAL = 15.0
_POLL_GROWTH = 1.5

_DATACENTER = re.compile(r"[a-z]+[0-9]*")
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_DOWNLOAD_CHUNK = 256 * 1024
_GZIP_MAGIC = b"\x1f\x8b"

Progress = bool | Callable[[Batch], None] | None


def datacenter_of(api_key: str) -> str:
    """``us6`` from ``0123…cdef-us6``: the part after the last dash."""
    _, sep, dc = api_key.strip().rpartition("-")
    if not sep or not _DATACENTER.fullmatch(dc):
        raise ConfigurationError(
            "the API key has no datacenter suffix (like -us6); "
            "give the server's URL to reach a Conveyor server"
        )
    return dc


def api_root(base_url: str) -> str:
    """``http://host:8000`` or ``…/3.0/`` into ``…/3.0``: users paste either form."""
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"not an http(s) URL: {base_url!r}")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"the base URL must not carry a query or fragment: {base_url!r}")
    return url if url.endswith("/3.0") else f"{url}/3.0"


def _segment(value: str) -> str:
    # Ids come from users and files; quoting keeps a stray "/" or "?" from changing the route.
    return quote(value, safe="")


class Client:
    """A sync client of the Batch API over httpx.

    Give ``api_key`` alone for Mailchimp (the datacenter comes from the key), or ``base_url``
    (with the key the server issued) for a Conveyor server. 429 and 5xx answers are retried
    with growing, jittered delays, ``max_retries`` times at most; other errors raise
    :class:`ConveyorApiError` at once.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = USER_AGENT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if base_url:
            self.base_url = api_root(base_url)
        elif api_key:
            self.base_url = f"https://{datacenter_of(api_key)}.api.mailchimp.com/3.0"
        else:
            # Only from_env reads the environment: naming a variable here would mislead
            # someone who has it set and called Client() directly.
            raise ConfigurationError(
                "no API key: pass api_key (Client.from_env() reads it from "
                f"{ENV_API_KEY}), and base_url for a Conveyor server"
            )
        if max_retries < 0:
            raise ConfigurationError(f"max_retries must not be negative, got {max_retries}")
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._clock = clock
        timeouts = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        headers = {"User-Agent": user_agent, "Accept": "application/json"}
        # Mailchimp takes any user name with the key as the Basic password.
        auth = httpx.BasicAuth("conveyor", api_key.strip()) if api_key else None
        self._http = httpx.Client(auth=auth, headers=headers, timeout=timeouts, transport=transport)
        self._timeouts = timeouts
        self._transport = transport
        self._user_agent = user_agent
        self._download_client: httpx.Client | None = None

    @classmethod
    def from_env(
        cls, api_key: str | None = None, base_url: str | None = None, **options: Any
    ) -> Client:
        """Arguments first, then ``MAILCHIMP_API_KEY`` and ``CONVEYOR_URL``."""
        key = api_key or os.environ.get(ENV_API_KEY) or None
        if key is None:
            raise ConfigurationError(
                f"no API key: set {ENV_API_KEY} (and {ENV_URL} for a Conveyor server) "
                "or pass api_key"
            )
        return cls(
            key,
            base_url=base_url or os.environ.get(ENV_URL) or None,
            **options,
        )

    # -- life cycle ---------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()
        if self._download_client is not None:
            self._download_client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- batches ------------------------------------------------------------------------

    def submit(
        self, operations: Iterable[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> Batch:
        """``POST /batches``; ``operations`` may be any iterable, a generator of millions too.

        Every submit carries an ``Idempotency-Key`` header (a fresh one unless given) that its
        own retries repeat: a request whose answer was lost on the way back is sent again
        under the same key, and the server answers with the batch it already made. Pass your
        own key to resume a submit that a crash interrupted (see :mod:`conveyor.client.dbsync`).
        """
        key = idempotency_key or new_idempotency_key()
        with _spool_batch_body(operations) as body:

            def build() -> httpx.Request:
                body.seek(0)
                return self._http.build_request(
                    "POST",
                    self._url("batches"),
                    content=cast(Iterable[bytes], body),
                    headers={"Content-Type": "application/json", IDEMPOTENCY_HEADER: key},
                )

            response = self._send(build, http=self._http, resend_safe=True)
            data = self._decoded(response)
        replayed = response.headers.get(REPLAYED_HEADER, "").strip().lower() == "true"
        return dataclasses.replace(Batch.from_json(data), replayed=replayed)

    def get(self, batch_id: str) -> Batch:
        """The batch's status; on a finished batch, with a freshly signed results URL."""
        return Batch.from_json(self._call("GET", f"batches/{_segment(batch_id)}"))

    def list(self, *, count: int = 10, offset: int = 0) -> BatchList:
        """One page of the batches of the last seven days (``count`` at most 1000)."""
        data = self._call("GET", "batches", params={"count": count, "offset": offset})
        return BatchList(
            batches=[Batch.from_json(item) for item in data.get("batches") or []],
            total_items=int(data.get("total_items") or 0),
        )

    def iter_batches(self, *, page_size: int = 1000) -> Iterator[Batch]:
        """Every batch the server lists, page by page."""
        offset = 0
        while True:
            page = self.list(count=page_size, offset=offset)
            yield from page.batches
            offset += len(page.batches)
            if not page.batches or offset >= page.total_items:
                return

    def delete(self, batch_id: str) -> None:
        """Stop the batch; its results, finished ones included, are no longer available."""
        self._call("DELETE", f"batches/{_segment(batch_id)}")

    def wait(
        self,
        batch_id: str,
        *,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        progress: Progress = None,
        interval: float = DEFAULT_POLL_INTERVAL,
        max_interval: float = DEFAULT_MAX_POLL_INTERVAL,
    ) -> Batch:
        """Poll until the batch is finished and return it; :class:`WaitTimeout` at the deadline.

        Polls start ``interval`` apart and grow by half each time up to ``max_interval``: a
        small batch on a local server is seen finished within a second, and an hour-long batch
        on Mailchimp costs a few hundred status calls, not thousands. ``progress=True`` shows a
        rich progress bar on stderr; a callable is called with every polled batch instead.
        """
        owned = BatchProgress() if progress is True else None
        report: Callable[[Batch], None] | None = owned or (progress if callable(progress) else None)
        deadline = self._clock() + timeout
        delay = max(interval, 0.0)
        try:
            while True:
                batch = self.get(batch_id)
                if report is not None:
                    report(batch)
                if batch.done:
                    return batch
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise WaitTimeout(batch, timeout)
                self._sleep(min(delay, remaining))
                delay = min(max(delay * _POLL_GROWTH, 0.05), max(max_interval, interval))
        finally:
            if owned is not None:
                owned.close()

    def results(self, batch_id: str, *, failed_only: bool = False) -> BatchResults:
        """Every result of a finished batch, decoded, one at a time.

        The archive is downloaded whole to a temporary file first (a slow reader must not hold
        a ten-minute signed URL open) and then read with flat memory. Use the return value as
        an iterator, ideally in a ``with`` block so the file goes as soon as you are done.
        """
        batch = self.get(batch_id)
        if not batch.done:
            raise BatchNotFinished(batch)
        if not batch.response_body_url:
            raise ArchiveError(
                f"batch {batch.id} is finished but has no results URL "
                "(results are kept for seven days)"
            )
        archive = self._download(batch.response_body_url)
        try:
            # Checked now, so that a download that is no archive at all fails here, not later
            # in the middle of the caller's loop.
            stream = _readable_archive(archive)
        except BaseException:
            archive.close()
            raise
        return BatchResults(batch, archive, stream, failed_only=failed_only)

    def failed(self, batch_id: str) -> BatchResults:
        """The results whose status code is not 2xx."""
        return self.results(batch_id, failed_only=True)

    # -- Conveyor's batch extensions (README, "Beyond Mailchimp") -----------------------

    def operations(
        self,
        batch_id: str,
        *,
        status: str | None = None,
        operation_id: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[OperationState]:
        """The batch's operations in submission order, page by page, while it runs too.

        ``status`` is ``pending``, ``succeeded`` or ``failed``. On a running batch a filtered
        view changes between pages (operations move from pending to a result), so read a
        filtered view whole once the batch has finished. ``page_size`` is the ``count`` of
        each request, at most 1000 (the server's cap).
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1 to {MAX_PAGE_SIZE}, got {page_size}")
        self._require_conveyor("the operations view")
        path = f"batches/{_segment(batch_id)}/operations"
        filters = {"status": status, "operation_id": operation_id}
        offset = 0
        while True:
            params = {k: v for k, v in filters.items() if v is not None}
            data = self._call("GET", path, params={**params, "count": page_size, "offset": offset})
            items = data.get("operations") or []
            for item in items:
                yield OperationState.from_json(item)
            offset += len(items)
            if not items or offset >= int(data.get("total_items") or 0):
                return

    def results_ndjson(
        self, batch_id: str, *, status: str | None = None
    ) -> Generator[StreamedResult, None, None]:
        """Every result so far as it streams, decoded; ``status="failed"`` for failures only.

        Unlike :meth:`results`, it works while the batch runs and holds one line at a time.
        Stopping early: ``close()`` the generator (``contextlib.closing``) to free the
        connection at once.
        """
        self._require_conveyor("NDJSON results")
        url = self._url(f"batches/{_segment(batch_id)}/results.ndjson")
        params = {"status": status} if status else None

        def build() -> httpx.Request:
            return self._http.build_request("GET", url, params=params)

        response = self._send(build, http=self._http, stream=True)
        try:
            if response.status_code >= 400:
                response.read()
                raise _api_error(response)
            received = 0
            try:
                for line in response.iter_lines():
                    if line.strip():
                        received += 1
                        yield StreamedResult.from_json(orjson.loads(line))
            except httpx.TransportError as exc:
                # Not resumed: while the batch runs, the results so far are not a stable
                # prefix to skip (groups commit out of order), so the caller starts again.
                raise ConveyorConnectionError(
                    f"GET {url}: the stream broke after {received} lines: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        finally:
            response.close()

    def watch(self, batch_id: str) -> Generator[ProgressUpdate, None, None]:
        """The batch's progress events as the server sends them, until ``finished``.

        Stopping early: ``close()`` the generator (``contextlib.closing``) to close the stream.

        A stream lost on the way, or ended before ``finished``, is opened again (up to
        ``max_retries`` times in a row, with backoff); the server sends the batch's state at
        once on every new stream, so nothing is missed but repeats of the latest state.
        """
        self._require_conveyor("progress events")
        url = self._url(f"batches/{_segment(batch_id)}/events")

        def build() -> httpx.Request:
            return self._http.build_request("GET", url, headers={"Accept": SSE_TYPE})

        failures = 0
        while True:
            response = self._send(build, http=self._http, stream=True)
            try:
                if response.status_code >= 400:
                    response.read()
                    raise _api_error(response)
                if not response.headers.get("content-type", "").startswith(SSE_TYPE):
                    raise ConveyorConnectionError(
                        f"GET {url}: answered {response.headers.get('content-type')!r}, not an "
                        "event stream: is it a Conveyor server?"
                    )
                for event in EventSource(response).iter_sse():
                    failures = 0
                    update = ProgressUpdate.from_json(event.event, orjson.loads(event.data))
                    yield update
                    if update.last:
                        return
                lost = "the stream ended before the batch finished"
            except httpx.TransportError as exc:
                lost = f"{type(exc).__name__}: {exc}"
            finally:
                response.close()
            failures += 1
            if failures > self.max_retries:
                raise ConveyorConnectionError(f"GET {url}: {lost}")
            self._sleep(self._backoff_delay(failures - 1, None))

    def retry_failed(self, batch_id: str, *, status_codes: Iterable[int] | None = None) -> Batch:
        """A new batch of the failed operations (or of those with these status codes)."""
        self._require_conveyor("retry")
        body = {"status_codes": sorted(set(status_codes))} if status_codes is not None else {}
        return Batch.from_json(self._call("POST", f"batches/{_segment(batch_id)}/retry", json=body))

    def cancel(self, batch_id: str) -> Batch:
        """Stop the batch and keep what ran: the archive holds exactly the finished operations.

        :meth:`delete` is Mailchimp's way to stop a batch, and discards its results.
        """
        self._require_conveyor("cancel")
        return Batch.from_json(self._call("POST", f"batches/{_segment(batch_id)}/cancel"))

    @property
    def is_mailchimp(self) -> bool:
        return (urlsplit(self.base_url).hostname or "").endswith(".api.mailchimp.com")

    def _require_conveyor(self, what: str) -> None:
        if self.is_mailchimp:
            raise ExtensionUnavailable(
                f"{what} is a Conveyor extension: Mailchimp has no such endpoint"
            )

    # -- sync from a database ----------------------------------------------------------

    def sync(self, source_url: str, query: str, list_id: str, **options: Any) -> SyncSummary:
        """The rows of ``query`` into the list, web_ids saved back: :func:`conveyor.client.sync`."""
        from conveyor.client.dbsync import sync

        return sync(self, source_url, query, list_id, **options)

    # -- batch webhooks -----------------------------------------------------------------

    def add_webhook(self, url: str, *, enabled: bool = True) -> Webhook:
        data = self._call("POST", "batch-webhooks", json={"url": url, "enabled": enabled})
        return Webhook.from_json(data)

    def update_webhook(
        self, webhook_id: str, *, url: str | None = None, enabled: bool | None = None
    ) -> Webhook:
        body: dict[str, Any] = {}
        if url is not None:
            body["url"] = url
        if enabled is not None:
            body["enabled"] = enabled
        data = self._call("PATCH", f"batch-webhooks/{_segment(webhook_id)}", json=body)
        return Webhook.from_json(data)

    def list_webhooks(self, *, count: int = 1000, offset: int = 0) -> WebhookList:
        # 1000 covers every webhook at once: Mailchimp allows 20 per account.
        data = self._call("GET", "batch-webhooks", params={"count": count, "offset": offset})
        return WebhookList(
            webhooks=[Webhook.from_json(item) for item in data.get("webhooks") or []],
            total_items=int(data.get("total_items") or 0),
        )

    def delete_webhook(self, webhook_id: str) -> None:
        self._call("DELETE", f"batch-webhooks/{_segment(webhook_id)}")

    # -- anything else ------------------------------------------------------------------

    def ping(self) -> Any:
        return self._call("GET", "ping")

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Any Marketing API call, with the same retries and errors; the decoded body."""
        return self._call(method.upper(), path, json=json, params=params)

    # -- internals ----------------------------------------------------------------------

    @property
    def _download_http(self) -> httpx.Client:
        # Downloads get a client of their own that holds no credentials at all: the archive
        # URL is signed, and S3 refuses a presigned request that also carries Authorization.
        # Made on first use: most clients never download, and each httpx client costs a TLS
        # context.
        if self._download_client is None:
            self._download_client = httpx.Client(
                headers={"User-Agent": self._user_agent},
                timeout=self._timeouts,
                transport=self._transport,
                follow_redirects=True,
            )
        return self._download_client

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        content = None if json is None else orjson.dumps(json)
        headers = {"Content-Type": "application/json"} if content is not None else None

        def build() -> httpx.Request:
            return self._http.build_request(
                method,
                self._url(path),
                content=content,
                params=dict(params) if params else None,
                headers=headers,
            )

        return self._json(build)

    def _json(self, build: Callable[[], httpx.Request]) -> Any:
        return self._decoded(self._send(build, http=self._http))

    def _decoded(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise _api_error(response)
        if not response.content.strip():
            return None
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ConveyorApiError(
                response.status_code,
                "Unreadable response",
                f"the server answered {response.headers.get('content-type', 'no content type')}"
                f", not JSON: {response.text[:200]!r}",
                method=response.request.method,
                url=str(response.request.url),
            ) from None

    def _send(
        self,
        build: Callable[[], httpx.Request],
        *,
        http: httpx.Client,
        stream: bool = False,
        resend_safe: bool = False,
    ) -> httpx.Response:
        """Send with retries: 429 and 5xx always; transport errors when resending is safe.

        ``resend_safe``: the request may reach the server twice without acting twice (it
        carries an idempotency key), so a connection lost after sending is retried too.
        """
        attempt = 0
        while True:
            request = build()
            try:
                response = http.send(request, stream=stream)
            except httpx.TransportError as exc:
                safe = resend_safe or _may_resend(request.method, exc)
                if attempt >= self.max_retries or not safe:
                    raise ConveyorConnectionError(
                        f"{request.method} {request.url}: {type(exc).__name__}: {exc}"
                    ) from exc
                delay = self._backoff_delay(attempt, None)
            else:
                retryable = response.status_code == 429 or response.status_code >= 500
                if not retryable or attempt >= self.max_retries:
                    return response
                delay = self._backoff_delay(attempt, response.headers.get("Retry-After"))
                response.close()
            self._sleep(delay)
            attempt += 1

    def _backoff_delay(self, attempt: int, retry_after: str | None) -> float:
        hinted = _retry_after_seconds(retry_after)
        if hinted is not None:
            # The server knows best when it will have room again, within our own cap.
            return min(hinted, self.max_backoff)
        # "Equal jitter": never less than half the step, so retries of many clients that failed
        # together spread out without any of them retrying at once.
        step: float = min(self.max_backoff, self.backoff * 2.0**attempt)
        return step / 2 + random.uniform(0, step / 2)

    def _download(self, url: str) -> IO[bytes]:
        """The whole archive into a temporary file; a broken transfer starts over (bounded)."""

        def build() -> httpx.Request:
            # identity: a compressing proxy must not wrap the .tar.gz in a second gzip.
            return self._download_http.build_request(
                "GET", url, headers={"Accept-Encoding": "identity"}
            )

        archive = tempfile.TemporaryFile()  # noqa: SIM115 - BatchResults closes it
        try:
            for attempt in range(self.max_retries + 1):
                response = self._send(build, http=self._download_http, stream=True)
                try:
                    if response.status_code >= 400:
                        response.read()
                        raise _api_error(response)
                    archive.seek(0)
                    archive.truncate()
                    # iter_raw: the bytes as served; see _readable_archive for the encodings.
                    for chunk in response.iter_raw(_DOWNLOAD_CHUNK):
                        archive.write(chunk)
                    archive.flush()
                    return archive
                except httpx.TransportError as exc:
                    if attempt >= self.max_retries:
                        raise ArchiveError(f"the results download kept failing: {exc}") from exc
                finally:
                    response.close()
                self._sleep(self._backoff_delay(attempt, None))
            raise AssertionError("unreachable")  # pragma: no cover
        except BaseException:
            archive.close()
            raise


class BatchResults(Iterator[BatchResult]):
    """The results of one batch as an iterator; ``close()`` (or ``with``) frees the file."""

    def __init__(
        self,
        batch: Batch,
        archive: IO[bytes],
        stream: BinaryIO,
        *,
        failed_only: bool = False,
    ) -> None:
        self.batch = batch
        self._archive = archive
        self._failed_only = failed_only
        self._records: Iterator[ResultRecord] = iter_archive(stream)

    def __iter__(self) -> BatchResults:
        return self

    def __next__(self) -> BatchResult:
        if self._archive.closed:
            raise StopIteration
        try:
            while True:
                result = BatchResult.from_record(next(self._records))
                if not (self._failed_only and result.ok):
                    return result
        except StopIteration:
            self.close()
            raise
        except InvalidArchive as exc:
            self.close()
            raise ArchiveError(f"the results archive of batch {self.batch.id}: {exc}") from exc

    def close(self) -> None:
        close_records = getattr(self._records, "close", None)
        if close_records is not None:
            close_records()
        self._archive.close()

    def __enter__(self) -> BatchResults:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _readable_archive(archive: IO[bytes]) -> BinaryIO:
    """The downloaded bytes as the ``.tar.gz`` stream ``iter_archive`` reads.

    S3 objects uploaded with ``Content-Encoding: gzip`` metadata are served as-is, and iter_raw
    keeps them gzipped, as wanted. A server that gzips the already gzipped file on the fly gives
    two layers; one is peeled off here so such a download still reads.
    """
    archive.seek(0)
    head = archive.read(2)
    archive.seek(0)
    if head != _GZIP_MAGIC:
        raise ArchiveError(
            f"the results download is not a .tar.gz archive (it starts with {head!r})"
        )
    try:
        with gzip.GzipFile(fileobj=archive, mode="rb") as peek:
            inner = peek.read(2)
    except (OSError, EOFError):
        inner = b""
    archive.seek(0)
    if inner == _GZIP_MAGIC:
        return cast(BinaryIO, gzip.GzipFile(fileobj=archive, mode="rb"))
    return cast(BinaryIO, archive)


def _spool_batch_body(operations: Iterable[Mapping[str, Any]]) -> IO[bytes]:
    """The batch body in a temporary file, so that a retry can send it again; caller closes."""
    out = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, who closes it
    try:
        out.write(b'{"operations":[')
        for index, operation in enumerate(operations):
            if index:
                out.write(b",")
            out.write(orjson.dumps(normalize_operation(operation, index)))
        out.write(b"]}")
        # httpx takes the Content-Length from the file's size on disk: flush it all first.
        out.flush()
    except BaseException:
        out.close()
        raise
    return out


def normalize_operation(operation: Mapping[str, Any], index: int = 0) -> dict[str, Any]:
    """Check one operation and put it in the form the real service expects.

    ``body`` becomes a JSON-encoded string: Conveyor also takes an object there, Mailchimp
    documents only the string. A missing method or path is refused before anything is sent,
    naming the operation, instead of failing the whole upload on the server.
    """
    if not isinstance(operation, Mapping):
        raise InvalidOperation(
            f"operations[{index}] must be an object, got {type(operation).__name__}"
        )
    method = operation.get("method")
    path = operation.get("path")
    if not isinstance(method, str) or not method:
        raise InvalidOperation(f"operations[{index}].method is required")
    if not isinstance(path, str) or not path:
        raise InvalidOperation(f"operations[{index}].path is required")
    normalized = dict(operation)
    normalized["method"] = method.upper()
    body = normalized.get("body")
    if body is not None and not isinstance(body, str):
        normalized["body"] = orjson.dumps(body).decode()
    if normalized.get("operation_id") is None:
        normalized.pop("operation_id", None)
    return normalized


def new_idempotency_key() -> str:
    """A random key for one submit: 32 hex characters."""
    return uuid.uuid4().hex


def _may_resend(method: str, exc: httpx.TransportError) -> bool:
    # A refused or timed-out connection never reached the server; resending is always safe.
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    # Otherwise the request may have been acted on: only resend what may run twice.
    return method in _IDEMPOTENT


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _api_error(response: httpx.Response) -> ConveyorApiError:
    document: dict[str, Any] = {}
    try:
        decoded = orjson.loads(response.content) if response.content else None
        if isinstance(decoded, dict):
            document = decoded
    except orjson.JSONDecodeError:
        pass
    title = document.get("title")
    detail = document.get("detail")
    if not isinstance(title, str) or not title:
        title = response.reason_phrase or f"HTTP {response.status_code}"
    if not isinstance(detail, str):
        # Not a problem document (an S3 XML error, a proxy page): its start is the best detail.
        detail = "" if document else response.text[:300].strip()
    raw_errors = document.get("errors")
    errors: builtins.list[FieldError] = []
    if isinstance(raw_errors, builtins.list):
        errors = [
            FieldError(str(item.get("field", "")), str(item.get("message", "")))
            for item in raw_errors
            if isinstance(item, dict)
        ]
    return ConveyorApiError(
        response.status_code,
        title,
        detail,
        type=str(document.get("type") or ""),
        instance=str(document.get("instance") or response.headers.get("X-Request-Id") or ""),
        errors=tuple(errors),
        document=document,
        method=response.request.method,
        url=str(response.request.url),
    )
