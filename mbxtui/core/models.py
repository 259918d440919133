"""The schema, in one place. Column meanings follow DOMAIN.md "Records".

Tables are created by the migrations in ``mbxtui.core.migrations`` (frozen SQL), not by
``create_tables``, so that a database made by this version opens in later ones.
"""

from __future__ import annotations

import functools
from datetime import datetime

from peewee import (
    BooleanField,
    CharField,
    DatabaseProxy,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from mbxtui.core import clock
from mbxtui.core.enums import JobState

database = DatabaseProxy()


def utcnow() -> datetime:
    """The wall clock as stored (see core/clock.py: jumps of it are watched there)."""
    return clock.now()


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False

    @classmethod
    def find(cls, record_id: int):
        """The record with this id, or None, like ``get_or_none`` but on SQL built once per model
        and database: on the paths that run per mailbox tested, building the query cost ten
        times running it."""
        row = cls.raw(_select_by_id_sql(cls, database.param), record_id)
        return next(iter(row), None)


@functools.cache
def _select_by_id_sql(model: type[Model], param: str) -> str:
    return model.select().where(model._meta.primary_key == 0).sql()[0]


class User(BaseModel):
    name = CharField()
    email = CharField(unique=True)
    active = BooleanField(default=True)
    created_on = DateTimeField(default=utcnow)


class Operator(BaseModel):
    login = CharField(unique=True)
    role = CharField()
    user = ForeignKeyField(User, null=True, on_delete="SET NULL")
    active = BooleanField(default=True)
    created_on = DateTimeField(default=utcnow)


class Queue(BaseModel):
    name = CharField()
    email = CharField(unique=True)
    owner = ForeignKeyField(User, backref="queues", on_delete="RESTRICT")
    active = BooleanField(default=True)
    created_on = DateTimeField(default=utcnow)


class Profile(BaseModel):
    name = CharField(unique=True)
    type = CharField()
    incoming_host = CharField()
    incoming_port = IntegerField()
    incoming_tls = CharField()
    incoming_auth = CharField()
    outgoing_host = CharField()
    outgoing_port = IntegerField()
    outgoing_tls = CharField()
    outgoing_auth = CharField()
    username = CharField(default="")
    password_set = BooleanField(default=False)
    token_set = BooleanField(default=False)
    ca_file = CharField(null=True)
    max_connections = IntegerField(default=10)
    timeout_seconds = IntegerField(default=30)
    verify_delivery = BooleanField(default=False)
    process_email_from = DateTimeField(null=True)
    min_polling_minutes = IntegerField(default=0)
    owner = ForeignKeyField(User, null=True, on_delete="SET NULL")
    active = BooleanField(default=True)
    created_on = DateTimeField(default=utcnow)
    modified_on = DateTimeField(default=utcnow)
    row_version = IntegerField(default=1)
    # R34 (endpoint_binding.py): the endpoint each secret was set or confirmed for, and the one a
    # global_admin confirmed for credentials in clear.
    password_bound_to = TextField(null=True)
    token_bound_to = TextField(null=True)
    plaintext_confirmed_for = TextField(null=True)
    retest_hours = IntegerField(null=True)  # R33: re-test enabled mailboxes not proven for this long
    processed_folder = TextField(null=True)  # R28: IMAP moves processed mail here instead of deleting
    # OAuth2 with a provider (core/oauth): who issues the tokens, for which client; the client's
    # credential is in the keyring, ``oauth_credential`` says which kind, bound as R34 says.
    oauth_provider = CharField(null=True)  # microsoft365, google, generic; NULL: tokens set by hand
    oauth_tenant = TextField(null=True)
    oauth_client_id = TextField(null=True)
    oauth_issuer = TextField(null=True)
    oauth_scope = TextField(null=True)
    oauth_credential = CharField(null=True)  # client_secret, certificate, service_account
    oauth_credential_bound_to = TextField(null=True)


class Mailbox(BaseModel):
    name = CharField(index=True)
    email = CharField(unique=True)
    regarding = CharField()  # user, queue or forward
    user = ForeignKeyField(User, null=True, unique=True, on_delete="RESTRICT")
    queue = ForeignKeyField(Queue, null=True, unique=True, on_delete="RESTRICT")
    owner = ForeignKeyField(User, null=True, backref="owned_mailboxes", on_delete="SET NULL")
    profile = ForeignKeyField(Profile, null=True, backref="mailboxes", on_delete="RESTRICT")
    is_forward = BooleanField(default=False)
    incoming_method = CharField(default="none")
    outgoing_method = CharField(default="none")
    act_method = CharField(default="none")
    use_own_credentials = BooleanField(default=False)
    username = CharField(default="")
    password_set = BooleanField(default=False)
    token_set = BooleanField(default=False)
    delete_after_processing = BooleanField(default=False)
    process_email_after = DateTimeField(null=True)
    approval = CharField(default="empty")
    approved_by = CharField(null=True)
    approved_on = DateTimeField(null=True)
    incoming_status = CharField(default="not_run")
    outgoing_status = CharField(default="not_run")
    act_status = CharField(default="not_run")
    overall_status = CharField(default="not_run")
    incoming_enabled = BooleanField(default=False)
    outgoing_enabled = BooleanField(default=False)
    act_enabled = BooleanField(default=False)
    test_scheduled = BooleanField(default=False)
    test_last_attempted_by = CharField(null=True)
    test_last_attempted_on = DateTimeField(null=True)
    test_completed_on = DateTimeField(null=True)
    last_error_code = CharField(null=True)
    last_error_text = TextField(null=True)
    transient_failures = IntegerField(default=0)
    postponed_until = DateTimeField(null=True)
    active = BooleanField(default=True)
    created_on = DateTimeField(default=utcnow)
    modified_on = DateTimeField(default=utcnow)
    row_version = IntegerField(default=1)
    password_bound_to = TextField(null=True)  # R34: the endpoint of its profile the secret is for
    token_bound_to = TextField(null=True)
    tracking = CharField(null=True)  # R27: all, replies, none; None follows the organisation's default


class OrgSettings(BaseModel):
    """The single organisation email settings record (id 1)."""

    default_profile = ForeignKeyField(Profile, null=True, on_delete="SET NULL")
    default_incoming = CharField(default="server_side_sync")
    default_outgoing = CharField(default="server_side_sync")
    default_act = CharField(default="none")
    require_approval_users = BooleanField(default=True)
    require_approval_queues = BooleanField(default=True)
    record_error_alerts = BooleanField(default=True)
    record_warning_alerts = BooleanField(default=True)
    record_information_alerts = BooleanField(default=True)
    notify_owners_of_profile_alerts = BooleanField(default=False)
    retry_attempts = IntegerField(default=10)
    retry_interval_minutes = IntegerField(default=5)
    row_version = IntegerField(default=1)
    tracking_users = CharField(default="replies")  # R27
    tracking_queues = CharField(default="all")
    stale_hours = IntegerField(default=24)  # R31
    notification_mailbox = ForeignKeyField(Mailbox, null=True, on_delete="SET NULL")  # R32
    oauth_refresh_days = IntegerField(default=90)  # a refresh token's life when its provider does not say
    oauth_expiry_warning_days = IntegerField(default=7)


class Alert(BaseModel):
    level = CharField()
    code = CharField()
    text = TextField()
    mailbox = ForeignKeyField(Mailbox, null=True, backref="alerts", on_delete="CASCADE")
    profile = ForeignKeyField(Profile, null=True, backref="alerts", on_delete="CASCADE")
    mailbox_owner = ForeignKeyField(User, null=True, on_delete="SET NULL")
    profile_owner = ForeignKeyField(User, null=True, on_delete="SET NULL")
    created_on = DateTimeField(default=utcnow)
    dismissed = BooleanField(default=False)
    dismissed_by = CharField(null=True)
    dismissed_on = DateTimeField(null=True)


class AuditEntry(BaseModel):
    at = DateTimeField(default=utcnow)
    login = CharField()  # the operator the change was made as
    by_login = CharField(null=True)  # the global admin who acted as ``login`` (--as), if any
    action = CharField()
    record_kind = CharField()
    record_count = IntegerField(default=1)
    summary = TextField()


class AuditRecord(BaseModel):
    """One record touched by an audit entry, with its values before and after (JSON, never a secret)."""

    entry = ForeignKeyField(AuditEntry, backref="records", on_delete="CASCADE")
    record_kind = CharField()
    record_id = IntegerField()
    before = TextField(null=True)
    after = TextField(null=True)


class EnablementBatch(BaseModel):
    """Test & Enable asked for once, for one or many mailboxes."""

    requested_by = CharField()
    requested_on = DateTimeField(default=utcnow)
    description = TextField(default="")
    total = IntegerField(default=0)

    class Meta:
        table_name = "test_batch"


class EnablementJob(BaseModel):
    """One Test & Enable of one mailbox. ``state``: a ``JobState``; ``outcome``: a ``JobOutcome``."""

    batch = ForeignKeyField(EnablementBatch, backref="jobs", on_delete="CASCADE")
    mailbox = ForeignKeyField(Mailbox, backref="jobs", on_delete="CASCADE")
    requested_by = CharField()
    state = CharField(default=JobState.QUEUED.value)
    attempt = IntegerField(default=1)
    not_before = DateTimeField(null=True)
    started_on = DateTimeField(null=True)
    finished_on = DateTimeField(null=True)
    worker = CharField(null=True)
    lease_until = DateTimeField(null=True)
    outcome = CharField(null=True)
    result = TextField(null=True)  # JSON: the steps of each direction

    class Meta:
        table_name = "test_job"


class EmailActivity(BaseModel):
    """One tracked email (R25): unique per direction and Message-ID. ``to``, ``cc`` and
    ``attachments`` are JSON lists; ``state`` an ``ActivityState``; ``mailbox``: the mailbox it first
    came through (incoming) or is sent from (outgoing)."""

    direction = CharField()
    state = CharField()
    message_id = TextField()
    sender = TextField(default="")
    to = TextField(default="[]")
    cc = TextField(default="[]")
    subject = TextField(default="")
    sent_on = DateTimeField(null=True)
    received_on = DateTimeField(null=True)
    size = IntegerField(default=0)
    attachments = TextField(default="[]")
    preview = TextField(default="")
    in_reply_to = TextField(default="")  # In-Reply-To and References, space-separated (R27)
    problem = TextField(null=True)  # why it is ``unparseable``
    mailbox = ForeignKeyField(Mailbox, null=True, on_delete="SET NULL")
    created_on = DateTimeField(default=utcnow)
    # Outgoing (R29): what is sent, the thread it answers, who queued it and its attempts.
    body = TextField(default="")
    reference_ids = TextField(default="")  # References of a reply, space-separated
    reply_to_activity = ForeignKeyField("self", null=True, on_delete="SET NULL")
    created_by = CharField(null=True)
    attempts = IntegerField(default=0)
    next_attempt = DateTimeField(null=True)
    last_error_code = CharField(null=True)
    last_error_text = TextField(null=True)


class ActivityReceipt(BaseModel):
    """A mailbox an incoming activity came through, and where it lay on that server."""

    activity = ForeignKeyField(EmailActivity, backref="receipts", on_delete="CASCADE")
    mailbox = ForeignKeyField(Mailbox, on_delete="CASCADE")
    folder = TextField()
    uid = IntegerField()
    received_on = DateTimeField(default=utcnow)


class ActivityParty(BaseModel):
    """A user or a queue an activity concerns."""

    activity = ForeignKeyField(EmailActivity, backref="parties", on_delete="CASCADE")
    user = ForeignKeyField(User, null=True, on_delete="CASCADE")
    queue = ForeignKeyField(Queue, null=True, on_delete="CASCADE")


class SyncCheckpoint(BaseModel):
    """Where reading a mailbox's folder stopped (R24): IMAP UIDVALIDITY and the last UID processed."""

    mailbox = ForeignKeyField(Mailbox, on_delete="CASCADE")
    folder = TextField()
    uidvalidity = IntegerField()
    last_uid = IntegerField()
    updated_on = DateTimeField(default=utcnow)
    delete_pending = TextField(null=True)  # R28: JSON list of the UIDs committed and not yet deleted


class SyncStatus(BaseModel):
    """A mailbox's processing (R31). ``worker``/``lease_until``: the worker cycling it now, so two
    workers never process one mailbox at once; ``enabled_since``: where reading starts when neither
    the mailbox nor its profile says (R24)."""

    mailbox = ForeignKeyField(Mailbox, primary_key=True, on_delete="CASCADE")
    state = CharField(default="idle")
    worker = CharField(null=True)
    lease_until = DateTimeField(null=True)
    enabled_since = DateTimeField(null=True)
    last_cycle_started = DateTimeField(null=True)
    last_cycle_finished = DateTimeField(null=True)
    last_incoming_success = DateTimeField(null=True)
    last_outgoing_success = DateTimeField(null=True)
    items_last_cycle = IntegerField(default=0)
    items_total = IntegerField(default=0)
    unresolved_total = IntegerField(default=0)
    next_due = DateTimeField(null=True)
    last_error_code = CharField(null=True)
    last_error_text = TextField(null=True)
    incoming_failures = IntegerField(default=0)  # transient failures in a row (R30)
    outgoing_failures = IntegerField(default=0)
    stale_alerted_on = DateTimeField(null=True)  # R31: the stale warning raised for this stretch


class SeenUidl(BaseModel):
    """A POP3 message a mailbox has seen, by its UIDL (R24): ``processed``, or passed over (received
    before the reading date, tracked for nobody); only a processed one is deleted (R28)."""

    mailbox = ForeignKeyField(Mailbox, on_delete="CASCADE")
    uidl = TextField()
    seen_on = DateTimeField(default=utcnow)
    processed = IntegerField(default=0)

    class Meta:
        table_name = "sync_seen_uidl"


class MailboxFailure(BaseModel):
    """R16: a direction of a mailbox that failed (``activity``: ``test`` or ``processing``) and has
    not passed since, with its profile then and when it last failed."""

    mailbox = ForeignKeyField(Mailbox, on_delete="CASCADE")
    profile = ForeignKeyField(Profile, on_delete="CASCADE")
    direction = CharField()
    activity = CharField()
    failed_on = DateTimeField(default=utcnow)


class OwnerNotice(BaseModel):
    """When an owner was last emailed about a profile or mailbox (R32: at most one an hour)."""

    record_kind = CharField()
    record_id = IntegerField()
    sent_on = DateTimeField(default=utcnow)


class MailboxAuthorization(BaseModel):
    """A mailbox's own OAuth2 authorization (``mailbox authorize``); its tokens are in the keyring."""

    mailbox = ForeignKeyField(Mailbox, unique=True, on_delete="CASCADE")
    authorized_on = DateTimeField(default=utcnow)
    authorized_by = CharField()
    refresh_expires_on = DateTimeField(null=True, index=True)
    last_refresh_on = DateTimeField(null=True)
    last_refresh_error = TextField(null=True)
    warned_on = DateTimeField(null=True)


class OAuthTokenState(BaseModel):
    """What processes last saw of a profile's OAuth2 tokens (core/oauth/token_state.py): when one was
    obtained and until when it is valid, the last failure to get one; never a token."""

    profile = ForeignKeyField(Profile, on_delete="CASCADE", unique=True)
    provider = CharField()
    tenant = TextField(null=True)
    client_id = TextField(null=True)
    obtained_on = DateTimeField(null=True)
    expires_on = DateTimeField(null=True)
    error_code = CharField(null=True)
    error_text = TextField(null=True)
    error_on = DateTimeField(null=True)

    class Meta:
        table_name = "oauth_token_state"


ALL_MODELS = [
    User,
    Operator,
    Queue,
    Profile,
    Mailbox,
    OrgSettings,
    Alert,
    AuditEntry,
    AuditRecord,
    EnablementBatch,
    EnablementJob,
    EmailActivity,
    ActivityReceipt,
    ActivityParty,
    SyncCheckpoint,
    SyncStatus,
    SeenUidl,
    MailboxFailure,
    OwnerNotice,
    MailboxAuthorization,
    OAuthTokenState,
]
