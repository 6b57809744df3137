"""Cursor pagination for the API's lists: ``limit``, ``next_cursor``, a stable order.

Lists whose rows the service reads whole (a tenant's configuration: merchants, stores,
terminals, keys, offers, campaigns, benefit rules; a member's cards and wallet) are paged
here by a sort key of each item — its creation time and id — so a page boundary does not
move when rows are added elsewhere in the list. The cursor is that key of the page's last
item, opaque to the client. Long histories page in SQL instead (the ledger, security events).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from patron.errors import InvalidInput

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR_LENGTH = 200

T = TypeVar("T")
SortKey = tuple[datetime, str]


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"
    title = "Invalid cursor"


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null "
                                                "on the last page")


@dataclass(frozen=True)
class Paging:
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    def page(self, items: Iterable[T], *, key: Callable[[T], SortKey],
             newest_first: bool = False) -> Page[T]:
        """One page of ``items`` in the order of ``key`` (oldest first, or newest)."""
        ordered = sorted(items, key=key, reverse=newest_first)
        if self.cursor is not None:
            after = decode_cursor(self.cursor)
            ordered = [item for item in ordered
                       if (key(item) < after if newest_first else key(item) > after)]
        chunk = ordered[:self.limit]
        more = len(ordered) > self.limit
        return Page[T](items=chunk, next_cursor=encode_cursor(key(chunk[-1])) if more else None)


def encode_cursor(position: SortKey) -> str:
    raw = json.dumps([position[0].isoformat(), position[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> SortKey:
    refused = InvalidCursor("pass back the next_cursor of the previous page unchanged, or "
                            "leave cursor out for the first page", field="cursor")
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise refused
    try:
        at, ident = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        moment = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error):
        raise refused from None
    if not isinstance(ident, str) or moment.tzinfo is None:
        raise refused
    return moment, ident


def by_creation(item: object) -> SortKey:
    """The usual sort key: an item's ``created_at`` and ``id``."""
    created_at = getattr(item, "created_at")  # noqa: B009 - any Read model with both
    return created_at, str(getattr(item, "id"))  # noqa: B009
