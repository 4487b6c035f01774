"""The Elasticsearch connection built from settings: the one place that reads the credentials."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from price_alchemy.errors import ConfigError

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from price_alchemy.config import Settings

log = logging.getLogger(__name__)


def connect(settings: Settings, *, request_timeout: float = 30.0, max_retries: int = 1) -> Elasticsearch:
    """A client for ``settings.elasticsearch_url`` with an API key or basic auth when configured.

    Retries are left to the callers that know what is safe to retry (the shipper retries whole
    batches with back-off); the client itself retries a request at most ``max_retries`` times.
    Secrets are passed to the client only, never logged.
    """
    from elasticsearch import Elasticsearch

    if not settings.elasticsearch_url:
        raise ConfigError("PRICE_ALCHEMY_ELASTICSEARCH_URL is not set (e.g. http://127.0.0.1:9200)")
    if settings.elasticsearch_api_key is not None:
        auth = "api key"
        client = Elasticsearch(
            settings.elasticsearch_url,
            api_key=settings.elasticsearch_api_key.get_secret_value(),
            request_timeout=request_timeout,
            max_retries=max_retries,
            retry_on_timeout=max_retries > 0,
        )
    elif settings.elasticsearch_username:
        auth = f"user {settings.elasticsearch_username}"
        password = (
            settings.elasticsearch_password.get_secret_value() if settings.elasticsearch_password else ""
        )
        client = Elasticsearch(
            settings.elasticsearch_url,
            basic_auth=(settings.elasticsearch_username, password),
            request_timeout=request_timeout,
            max_retries=max_retries,
            retry_on_timeout=max_retries > 0,
        )
    else:
        auth = "no auth"
        client = Elasticsearch(
            settings.elasticsearch_url,
            request_timeout=request_timeout,
            max_retries=max_retries,
            retry_on_timeout=max_retries > 0,
        )
    log.debug("elasticsearch client for %s (%s)", redact_url(settings.elasticsearch_url), auth)
    return client


def redact_url(url: str) -> str:
    """``url`` without a password in it (``http://user:secret@host`` -> ``http://user:***@host``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
