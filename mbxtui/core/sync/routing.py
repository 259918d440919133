"""Who a message concerns (R26) and whether it is tracked for them (R27), without touching the
database: the cycle reads the candidates once, the transaction asks which replies are tracked."""

from __future__ import annotations

from dataclasses import dataclass

from mbxtui.core.sync.messages import ParsedMessage

TRACKING = ("all", "replies", "none")


@dataclass(frozen=True)
class Party:
    """A user or a queue (exactly one id set) and its mailbox's tracking."""

    user_id: int | None
    queue_id: int | None
    tracking: str


def effective_tracking(own: str | None, regarding: str, users_default: str, queues_default: str) -> str:
    """R27: the mailbox's own setting, else the organisation's default for its kind."""
    if own in TRACKING:
        return own
    return users_default if regarding == "user" else queues_default


def route(message: ParsedMessage, own: Party | None, forward_candidates: dict[str, Party] | None) -> list[Party]:
    """The parties of a message read from a mailbox: its own user or queue, or for a forward mailbox
    (``forward_candidates``: address -> party of the users and queues it serves) those whose address
    is among the recipients. An empty list from a forward mailbox: unresolved."""
    if forward_candidates is None:
        return [own] if own is not None else []
    found = [forward_candidates[address] for address in message.recipients if address in forward_candidates]
    return list({(p.user_id, p.queue_id): p for p in found}.values())


def tracked(party: Party, message: ParsedMessage, tracked_ids: set[str]) -> bool:
    """R27: ``tracked_ids``: the Message-IDs among the message's In-Reply-To and References that
    name a tracked activity."""
    if party.tracking == "all":
        return True
    if party.tracking == "replies":
        return any(reference in tracked_ids for reference in message.in_reply_to)
    return False
