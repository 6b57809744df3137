"""Which channel a sale is on: the terminal's kind decides, never the body.

The web shop's terminal (kind ``online``) sells online; every other terminal — a POS
register, a kiosk, a reader — stands in a store. A body may still say ``channel`` (older
registers always send it): when it agrees it changes nothing, when it contradicts the
terminal it is refused (``channel_not_terminals``, 422). The quote, the commit, the
offline batch and the vouchers' own checks all ask ``sale_channel``.
"""

from __future__ import annotations

from patron.pos.errors import ChannelMismatch
from patron.pos.models import Channel
from patron.tenancy.models import TerminalKind


def terminal_channel(terminal_kind: str) -> Channel:
    """The channel of every sale at a terminal of this kind."""
    return Channel.online if terminal_kind == TerminalKind.online.value else Channel.store


def sale_channel(terminal_kind: str, stated: Channel | None, *,
                 field: str = "channel") -> Channel:
    """The sale's channel; ``stated`` (the body's, None when absent) must agree with it."""
    channel = terminal_channel(terminal_kind)
    if stated is not None and stated != channel:
        raise ChannelMismatch(f"a {terminal_kind} terminal's sales are {channel.value!r}, "
                              f"not {stated.value!r}: leave channel out or send "
                              f"{channel.value!r}", field=field, expected=channel.value)
    return channel
