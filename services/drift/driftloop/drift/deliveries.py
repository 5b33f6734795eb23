"""The webhook sender's adapters: HTTP through aiohttp, and the delivery ledger in
ClickHouse (table webhook_deliveries, keyed by webhook and event id)."""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

import aiohttp

from driftloop.clickhouse.client import ClickHouse
from driftloop.drift.webhooks import Answer, Delivery
from driftloop.kit.errors import clip

# Of a refusal's body, this much is kept for the log and the dead letter.
MAX_ERROR_BYTES = 300
LEDGER_COLUMNS = (
    "webhook",
    "event_id",
    "delivery_id",
    "kind",
    "model",
    "outcome",
    "attempts",
    "status",
    "error",
    "event_time",
    "finished",
)


class HttpTransport:
    """POSTs with aiohttp: one session (a connection pool) for every webhook, redirects not
    followed (a webhook URL that moved is a configuration error, said so), no proxy from
    the environment. Error texts never carry the URL: it may hold a credential."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(trust_env=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> Answer:
        assert self._session is not None, "HttpTransport.start() first"
        try:
            async with self._session.post(
                url,
                data=body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as response:
                if 200 <= response.status < 300:
                    return Answer(response.status)
                text = await response.content.read(MAX_ERROR_BYTES)
                return Answer(
                    response.status,
                    error=_hidden(url, " ".join(text.decode("utf-8", "replace").split())),
                    retry_after_s=retry_after(response.headers.get("Retry-After")),
                )
        except TimeoutError:
            return Answer(None, error=f"timeout: no answer within {timeout_s:g} s")
        except aiohttp.InvalidURL:
            return Answer(None, error="the webhook URL is not valid", final=True)
        except (aiohttp.ClientError, OSError) as error:
            return Answer(None, error=_hidden(url, f"{type(error).__name__}: {error}"))


def retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Retry-After in seconds: a number of seconds or an HTTP date (RFC 9110); None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return max(0.0, (moment - (now or dt.datetime.now(dt.UTC))).total_seconds())


def _hidden(url: str, text: str) -> str:
    """The text without the URL or its path (where webhook secrets live)."""
    parts = urlsplit(url)
    for secret in (url, parts.path + (f"?{parts.query}" if parts.query else "")):
        if len(secret) > 1:
            text = text.replace(secret, "<webhook url>")
    return clip(text, MAX_ERROR_BYTES)


class ClickHouseLedger:
    def __init__(self, clickhouse: ClickHouse) -> None:
        self._ch = clickhouse

    async def probe(self) -> None:
        """Raise unless ClickHouse answers (the consumer's test of a failure that passes)."""
        await self._ch.ping()

    async def finished(self, webhook: str, event_ids: Sequence[str]) -> set[str]:
        result = await self._ch.query(
            f"SELECT DISTINCT event_id FROM {self._ch.table('webhook_deliveries')} "
            "WHERE webhook = {webhook:String} AND has({ids:Array(String)}, event_id)",
            {"webhook": webhook, "ids": list(event_ids)},
        )
        return {str(row[0]) for row in result.rows}

    async def record(self, delivery: Delivery) -> None:
        row = (
            delivery.webhook,
            delivery.event_id,
            delivery.delivery_id,
            delivery.kind,
            delivery.model,
            delivery.outcome,
            delivery.attempts,
            delivery.status,
            delivery.error,
            delivery.event_time,
            delivery.finished,
        )
        await self._ch.insert("webhook_deliveries", LEDGER_COLUMNS, [row])
