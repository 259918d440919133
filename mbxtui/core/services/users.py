"""Users and queues, each with exactly one mailbox made when it is created (R1) and deactivated
with it (R19)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from peewee import JOIN, fn

from mbxtui.core import dialect, validation
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import Regarding
from mbxtui.core.errors import Conflict, NotFound
from mbxtui.core.models import Mailbox, Queue, User, database
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services import audit, bulk, mailboxes
from mbxtui.core.services import settings as settings_service


def _user_by_email(email: str, field: str = "email") -> User:
    address = validation.email(field, email)
    user = User.get_or_none(User.email == address)
    if user is None:
        raise NotFound(f"no user with email {address}")
    return user


def _queue_by_email(email: str) -> Queue:
    address = validation.email("email", email)
    queue = Queue.get_or_none(Queue.email == address)
    if queue is None:
        raise NotFound(f"no queue with email {address}")
    return queue


def _create_mailbox(actor: Actor, values: dict[str, Any]) -> Mailbox:
    mailboxes.ensure_email_free(values["email"])
    mailbox = Mailbox.create(**values)
    audit.record(actor, "mailbox.create", "mailbox", f"created the mailbox of {values['regarding']} {values['email']}",
                 [(mailbox.id, None, {k: v for k, v in values.items() if k != "approved_on"})])
    return mailbox


def add_user(actor: Actor, name: str, email: str) -> UserRecord:
    require(actor, Permission.CONFIGURE)
    name = validation.text("name", name)
    address = validation.email("email", email)
    with write_transaction():
        if User.get_or_none(User.email == address) is not None:
            raise Conflict(f"email: a user with email {address} already exists")
        settings = settings_service.load()
        user = User.create(name=name, email=address)
        audit.record(actor, "user.add", "user", f"added user {address}", [(user.id, None, {"name": name, "email": address})])
        mailbox = _create_mailbox(actor, mailboxes.new_mailbox_values(
            settings, name=name, email=address, regarding=Regarding.USER, owner_id=user.id, user_id=user.id))
    return user_record(user, mailbox)


def add_queue(actor: Actor, name: str, email: str, owner: str) -> QueueRecord:
    require(actor, Permission.CONFIGURE)
    name = validation.text("name", name)
    address = validation.email("email", email)
    owner_user = _user_by_email(owner, "owner")
    with write_transaction():
        if Queue.get_or_none(Queue.email == address) is not None:
            raise Conflict(f"email: a queue with email {address} already exists")
        settings = settings_service.load()
        queue = Queue.create(name=name, email=address, owner=owner_user.id)
        audit.record(actor, "queue.add", "queue", f"added queue {address}",
                     [(queue.id, None, {"name": name, "email": address, "owner": owner_user.email})])
        mailbox = _create_mailbox(actor, mailboxes.new_mailbox_values(
            settings, name=name, email=address, regarding=Regarding.QUEUE, owner_id=owner_user.id,
            queue_id=queue.id))
    return queue_record(queue, mailbox)


def _set_active(actor: Actor, record: User | Queue, kind: str, active: bool) -> None:
    record.active = active
    record.save()
    verb = "activated" if active else "deactivated"
    audit.record(actor, f"{kind}.{'activate' if active else 'deactivate'}", kind, f"{verb} {kind} {record.email}",
                 [(record.id, {"active": not active}, {"active": active})])
    if not active:
        database.execute_sql(dialect.current().create_selection_table())
        database.execute_sql(f"DELETE FROM {dialect.SELECTION_TABLE}")
        database.execute_sql(f"INSERT INTO {dialect.SELECTION_TABLE} SELECT id FROM mailbox WHERE {kind}_id = ?",
                             (record.id,))
        bulk.deactivate_selected(actor, f"deactivated the mailbox of {kind} {record.email} (R19)")


def _change_state(actor: Actor, kind: str, email: str, active: bool) -> User | Queue:
    require(actor, Permission.CONFIGURE)
    with write_transaction():
        record = _user_by_email(email) if kind == "user" else _queue_by_email(email)
        if record.active != active:
            _set_active(actor, record, kind, active)
    return record


def _shown_user(user: User) -> UserRecord:
    return user_record(user, Mailbox.get_or_none(Mailbox.user == user))


def _shown_queue(queue: Queue) -> QueueRecord:
    return queue_record(queue, Mailbox.get_or_none(Mailbox.queue == queue))


def deactivate_user(actor: Actor, email: str) -> UserRecord:
    """R19: the user's mailbox is deactivated with it and can no longer be enabled."""
    return _shown_user(_change_state(actor, "user", email, False))


def activate_user(actor: Actor, email: str) -> UserRecord:
    """The user becomes active; its mailbox stays inactive until activated and tested again."""
    return _shown_user(_change_state(actor, "user", email, True))


def deactivate_queue(actor: Actor, email: str) -> QueueRecord:
    """R19, for a queue."""
    return _shown_queue(_change_state(actor, "queue", email, False))


def activate_queue(actor: Actor, email: str) -> QueueRecord:
    """The queue becomes active; its mailbox stays inactive until activated and tested again."""
    return _shown_queue(_change_state(actor, "queue", email, True))


@dataclass(frozen=True)
class UserRecord:
    """A user as shown: ``mailbox`` is the address of its mailbox (None if it has none)."""

    name: str
    email: str
    active: bool
    mailbox: str | None

    def as_dict(self) -> dict[str, Any]:
        """As ``mbxtui user list --json`` prints it (the fields in this order)."""
        return asdict(self)


@dataclass(frozen=True)
class QueueRecord:
    """A queue as shown: ``owner`` is its owner's email, ``mailbox`` its mailbox's address."""

    name: str
    email: str
    owner: str
    active: bool
    mailbox: str | None

    def as_dict(self) -> dict[str, Any]:
        """As ``mbxtui queue list --json`` prints it (the fields in this order)."""
        return asdict(self)


def user_record(user: User, mailbox: Mailbox | None) -> UserRecord:
    return UserRecord(user.name, user.email, user.active, mailbox.email if mailbox else None)


def queue_record(queue: Queue, mailbox: Mailbox | None) -> QueueRecord:
    return QueueRecord(queue.name, queue.email, queue.owner.email, queue.active, mailbox.email if mailbox else None)


def list_users(actor: Actor, *, filter_text: str | None = None, limit: int = 1000, offset: int = 0) -> list[UserRecord]:
    require(actor, Permission.READ)
    limit, offset = validation.paging(limit, offset)
    filter_text = validation.text("filter", filter_text, max_length=200, required=False)
    query = (User.select(User, Mailbox.email.alias("mailbox_email"))
             .join(Mailbox, on=(Mailbox.user == User.id), join_type=JOIN.LEFT_OUTER)
             .order_by(User.name.collate("NOCASE"), User.id))
    if filter_text:
        needle = filter_text.lower()  # a plain substring: % and _ are not wildcards here
        query = query.where((fn.instr(fn.lower(User.name), needle) > 0) | (fn.instr(User.email, needle) > 0))
    return [UserRecord(u.name, u.email, u.active, u.mailbox_email)
            for u in query.limit(limit).offset(offset).objects()]


def list_queues(actor: Actor, *, limit: int = 1000, offset: int = 0) -> list[QueueRecord]:
    require(actor, Permission.READ)
    limit, offset = validation.paging(limit, offset)
    query = Queue.select().order_by(Queue.name, Queue.id).limit(limit).offset(offset)
    boxes = {m.queue_id: m for m in Mailbox.select().where(Mailbox.queue.is_null(False))}
    return [queue_record(q, boxes.get(q.id)) for q in query]
