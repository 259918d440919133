"""One mailbox: what a new one carries (R1, R2, R6), what its overall status is, reading it by
address, editing it (R7, R18) and creating a forward mailbox (R17).

Lists of mailboxes are in ``mailbox_views``, actions on many in ``bulk``."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Mapping

from mbxtui.core import validation
from mbxtui.core.db import write_transaction
from mbxtui.core.enums import ActMethod, Approval, IncomingMethod, OutgoingMethod, ProfileType, Regarding, Tracking
from mbxtui.core.errors import Conflict, InvalidInput, NotFound
from mbxtui.core.models import Mailbox, OrgSettings, Profile, database, utcnow
from mbxtui.core.permissions import Actor, Permission, require
from mbxtui.core.services import audit, authorization_identity
from mbxtui.core.services import settings as settings_service
from mbxtui.core.services.mailbox_views import MailboxRecord, rows_by_ids

if TYPE_CHECKING:
    from mbxtui.core.secrets import SecretStore

# Overall status: failure if any direction failed; success when every direction in use passed.
OVERALL_STATUS_SQL = """CASE
  WHEN incoming_status = 'failure' OR outgoing_status = 'failure' OR act_status = 'failure' THEN 'failure'
  WHEN (incoming_method != 'none' OR outgoing_method != 'none' OR act_method != 'none')
   AND (incoming_method = 'none' OR incoming_status = 'success')
   AND (outgoing_method = 'none' OR outgoing_status = 'success')
   AND (act_method = 'none' OR act_status = 'success') THEN 'success'
  ELSE 'not_run' END"""

OVERALL_STATUS_COLUMNS = ("incoming_status", "outgoing_status", "act_status",
                          "incoming_method", "outgoing_method", "act_method")


def overall_status_of(values: Mapping[str, str]) -> str:
    """``OVERALL_STATUS_SQL`` with each column that ``values`` names replaced by its expression there
    (the overall status of the values an UPDATE writes, in the same statement)."""
    return re.sub(r"\b(" + "|".join(OVERALL_STATUS_COLUMNS) + r")\b",
                  lambda match: f"({values.get(match.group(1), match.group(1))})", OVERALL_STATUS_SQL)


# What a mailbox moved to another profile starts over with: every test, not run.
RESET_ALL_TESTS = {
    "incoming_status": "'not_run'", "outgoing_status": "'not_run'", "act_status": "'not_run'",
    "overall_status": "'not_run'", "incoming_enabled": "0", "outgoing_enabled": "0", "act_enabled": "0",
    "last_error_code": "NULL", "last_error_text": "NULL", "transient_failures": "0", "postponed_until": "NULL",
}


# --- rules shared by every way a mailbox comes to be -------------------------------------------

def approval_required(settings: OrgSettings, regarding: str) -> bool:
    """R9: users follow "approved users", queues and forward mailboxes "approved queues"."""
    if regarding == Regarding.USER:
        return settings.require_approval_users
    return settings.require_approval_queues


def fresh_approval(settings: OrgSettings, regarding: str, profile: Profile | None) -> dict[str, Any]:
    """Approval of a new or re-addressed mailbox: R6 approves Exchange Online ones at once."""
    if profile is not None and profile.type == ProfileType.EXCHANGE_ONLINE:
        return {"approval": Approval.APPROVED.value, "approved_by": "exchange_online", "approved_on": utcnow()}
    state = Approval.PENDING if approval_required(settings, regarding) else Approval.EMPTY
    return {"approval": state.value, "approved_by": None, "approved_on": None}


def new_mailbox_values(settings: OrgSettings, *, name: str, email: str, regarding: str,
                       owner_id: int | None, user_id: int | None = None,
                       queue_id: int | None = None) -> dict[str, Any]:
    """R1/R2: a new user or queue mailbox carries the organisation's default profile and methods."""
    profile = settings.default_profile if settings.default_profile_id else None
    return {
        "name": name, "email": email, "regarding": regarding, "user": user_id, "queue": queue_id,
        "owner": owner_id, "profile": profile.id if profile else None, "is_forward": False,
        "incoming_method": settings.default_incoming, "outgoing_method": settings.default_outgoing,
        "act_method": settings.default_act,
        **fresh_approval(settings, regarding, profile),
    }


def ensure_email_free(address: str, field_name: str = "email", *, except_id: int | None = None) -> None:
    clash = Mailbox.select(Mailbox.id, Mailbox.name).where(Mailbox.email == address)
    if except_id is not None:
        clash = clash.where(Mailbox.id != except_id)
    existing = clash.first()
    if existing is not None:
        raise Conflict(f"{field_name}: {address} is already the address of mailbox {existing.name!r}")


def profile_by_name(name: str) -> Profile:
    """The active profile called ``name``, or a refusal naming the field."""
    name = validation.text("profile", name)
    profile = Profile.get_or_none(Profile.name == name)
    if profile is None:
        raise InvalidInput("profile", f"no profile named {name!r}")
    if not profile.active:
        raise InvalidInput("profile", f"profile {name!r} is inactive")
    return profile


def get(email: str) -> Mailbox:
    address = validation.email("email", email)
    mailbox = Mailbox.get_or_none(Mailbox.email == address)
    if mailbox is None:
        raise NotFound(f"no mailbox with email {address}")
    return mailbox


def show(actor: Actor, email: str) -> MailboxRecord:
    require(actor, Permission.READ)
    return MailboxRecord.of(rows_by_ids(actor, [get(email).id]).popitem()[1])


EDITABLE = ("name", "email", "profile", "incoming_method", "outgoing_method", "act_method", "username",
            "use_own_credentials", "delete_after_processing", "process_email_after", "tracking")
FOLLOW_ORGANISATION = "default"  # the tracking that follows the organisation's default (stored NULL)


def own_tracking(value: Any) -> str | None:
    """R27: the mailbox's own tracking, or None to follow the organisation's default for its kind."""
    if isinstance(value, str) and value.strip().lower() == FOLLOW_ORGANISATION:
        return None
    try:
        return validation.choice("tracking", value, Tracking).value
    except InvalidInput:
        allowed = ", ".join([*(t.value for t in Tracking), FOLLOW_ORGANISATION])
        raise InvalidInput("tracking", f"{validation.shown(value)} is not one of: {allowed}") from None


def _clean_edit(key: str, value: Any) -> Any:
    if key == "name":
        return validation.text("name", value)
    if key == "email":
        return validation.email("email", value)
    if key == "profile":
        return profile_by_name(value).id
    if key == "incoming_method":
        return validation.choice("incoming", value, IncomingMethod).value
    if key == "outgoing_method":
        return validation.choice("outgoing", value, OutgoingMethod).value
    if key == "act_method":
        return validation.choice("act", value, ActMethod).value
    if key == "username":
        return validation.text("username", value, max_length=254, required=False)
    if key in ("use_own_credentials", "delete_after_processing"):
        return validation.on_off(key.replace("_", "-"), value)
    if key == "process_email_after":
        if value in (None, ""):
            return None
        try:
            moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip())
            return validation.stored_moment(moment)
        except ValueError:
            raise InvalidInput("process-email-after", f"{validation.shown(value)} is not a date (YYYY-MM-DD)") from None
    if key == "tracking":
        return own_tracking(value)
    raise InvalidInput(key, "is not a mailbox field")


def _snapshot(mailbox: Mailbox) -> dict[str, Any]:
    return {key: getattr(mailbox, "profile_id" if key == "profile" else key) for key in EDITABLE}


def edit(actor: Actor, email: str, /, *, expected_version: int | None = None,
         store: Callable[[], SecretStore] | None = None, **fields: Any) -> MailboxRecord:
    """Change one mailbox (``email`` in ``fields`` is its new address). A new address resets approval
    and tests and disables it (R7). A new address or OAuth client takes the mailbox's own
    authorization out of ``store`` (opened only then; without it such an edit is refused, R34):
    once the edit has committed, the grant is revoked at its provider and its refresh token leaves
    the keyring; what failed of that is in the record's ``warnings``."""
    require(actor, Permission.CONFIGURE)
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a mailbox field")
    changes = {key: _clean_edit(key, value) for key, value in fields.items() if value is not None}
    if not changes:
        raise InvalidInput("mailbox", "nothing to change")
    with write_transaction():
        mailbox = get(email)
        if expected_version is not None and mailbox.row_version != expected_version:
            raise Conflict(f"mailbox {mailbox.email} was changed by someone else since you opened it; reload and try again")
        before = _snapshot(mailbox)
        changed = {k: v for k, v in changes.items() if before[k] != v}
        if not changed:
            return show(actor, mailbox.email)
        after = {**before, **changed}
        if after["delete_after_processing"] and mailbox.regarding == Regarding.USER:
            raise InvalidInput("delete-after-processing", "is allowed only on queue and forward mailboxes (R18)")
        if mailbox.is_forward and after["outgoing_method"] != OutgoingMethod.NONE:
            raise InvalidInput("outgoing", "a forward mailbox only receives: its outgoing method must be none")
        if mailbox.is_forward and after["incoming_method"] == IncomingMethod.FORWARD_MAILBOX:
            raise InvalidInput("incoming", "a forward mailbox cannot itself be served by a forward mailbox")
        if mailbox.is_forward and after["tracking"] is not None:
            raise InvalidInput("tracking", "a forward mailbox has no tracking of its own: each user and queue it "
                                           "serves follows theirs, so leave it at default")
        if "email" in changed:
            ensure_email_free(changed["email"], except_id=mailbox.id)
        dropped: dict[str, tuple[str, str]] = {}
        grant = None
        if "email" in changed or "profile" in changed:
            if authorization_identity.leaves_identity(mailbox, "email" in changed,
                                                      changed.get("profile", mailbox.profile_id)):
                grant = authorization_identity.drop_for_new_identity(mailbox, store)
                dropped = {"authorization": ("authorized", "none")}
        for key, value in changed.items():
            setattr(mailbox, "profile_id" if key == "profile" else key, value)
        if "email" in changed or "profile" in changed:
            for direction in ("incoming", "outgoing", "act"):
                setattr(mailbox, f"{direction}_status", "not_run")
                setattr(mailbox, f"{direction}_enabled", False)
            mailbox.last_error_code = mailbox.last_error_text = mailbox.postponed_until = None
            mailbox.transient_failures = 0
        if "email" in changed:
            profile = Profile.get_or_none(Profile.id == mailbox.profile_id) if mailbox.profile_id else None
            for key, value in fresh_approval(settings_service.load(), mailbox.regarding, profile).items():
                setattr(mailbox, key, value)
        for direction in ("incoming", "outgoing", "act"):
            if f"{direction}_method" in changed:
                setattr(mailbox, f"{direction}_status", "not_run")
                setattr(mailbox, f"{direction}_enabled", False)
        mailbox.modified_on = utcnow()
        mailbox.row_version += 1
        mailbox.save()
        database.execute_sql(f"UPDATE mailbox SET overall_status = {OVERALL_STATUS_SQL} WHERE id = ?", [mailbox.id])
        audit.record(actor, "mailbox.edit", "mailbox", f"changed mailbox {mailbox.email}: " + ", ".join(sorted(changed)),
                     [(mailbox.id, {**{k: before[k] for k in changed}, **{k: v[0] for k, v in dropped.items()}},
                       {**{k: _snapshot(mailbox)[k] for k in changed}, **{k: v[1] for k, v in dropped.items()}})])
    warnings = grant.finish(mailbox.email) if grant is not None else []  # committed: only now revoked and removed
    return replace(show(actor, mailbox.email), warnings=tuple(warnings))


def create_forward_mailbox(actor: Actor, *, name: str, email: str, profile: str,
                           delete_after_processing: bool = False, owner: str | None = None) -> MailboxRecord:
    """R17: a mailbox with no user or queue that receives for others; outgoing is none."""
    require(actor, Permission.CONFIGURE)
    from mbxtui.core.models import User

    name = validation.text("name", name)
    address = validation.email("email", email)
    target = profile_by_name(profile)
    delete_after = validation.on_off("delete-after-processing", delete_after_processing)
    owner_id = None
    if owner:
        owner_address = validation.email("owner", owner)
        user = User.get_or_none(User.email == owner_address)
        if user is None:
            raise InvalidInput("owner", f"no user with email {owner_address}")
        owner_id = user.id
    settings = settings_service.load()
    with write_transaction():
        ensure_email_free(address)
        mailbox = Mailbox.create(
            name=name, email=address, regarding=Regarding.FORWARD.value, owner=owner_id, profile=target.id,
            is_forward=True, incoming_method=IncomingMethod.SERVER_SIDE_SYNC.value,
            outgoing_method=OutgoingMethod.NONE.value, act_method=ActMethod.NONE.value,
            delete_after_processing=delete_after,
            **fresh_approval(settings, Regarding.FORWARD, target),
        )
        audit.record(actor, "mailbox.create_forward", "mailbox", f"created forward mailbox {address}",
                     [(mailbox.id, None, _snapshot(mailbox))])
    return show(actor, address)
