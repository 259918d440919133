"""The demo organisation, Fernhill Logistics, made through the services as an administrator would:
users and queues with their mailboxes, email server profiles pointed at the sandbox servers,
a forward mailbox, operators of every role, approvals, and a first Test & Enable run whose
results and alerts are already there when the console opens.

Deterministic: the same names, groups and faults every time (a seeded random generator), so
screenshots made from the demo can be made again.
"""

from __future__ import annotations

import csv
import random
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from mbxtui.core.jobs.runner import EnablementRunner
from mbxtui.core.models import Alert, Operator
from mbxtui.core.permissions import Actor
from mbxtui.core.secrets import SecretStore
from mbxtui.core.services import (
    alerts, bulk, credentials, enablement, imports, mailboxes, operators, profiles, settings,
)
from mbxtui.core.services.selection import Selection
from mbxtui.demo import identity_provider
from mbxtui.demo.mailsystem import DOMAIN, MAILBOX_PASSWORD, OAUTH2_TOKEN, SERVICE_LOGIN, SERVICE_PASSWORD
from mbxtui.demo.sandbox import HOST, SandboxPorts

RANDOM_SEED = 20240611

HEAD_OFFICE = "Head office IMAP"
BRANCH = "Branch POP3"
EXCHANGE = "Exchange Online"
EXCHANGE_OAUTH = "Exchange Online (OAuth2)"  # tokens from the demo's identity provider, through msal
LEGACY = "Legacy mail"
WAREHOUSE = "Warehouse server"

# Which sandbox port each profile's incoming and outgoing side uses (SandboxPorts field names).
PROFILE_PORTS = {
    HEAD_OFFICE: ("imaps", "submission"),
    BRANCH: ("pop3", "smtps"),
    EXCHANGE: ("imaps", "submission"),
    EXCHANGE_OAUTH: ("imaps", "submission"),
    LEGACY: ("legacy_imap", "untrusted_smtps"),
    WAREHOUSE: ("down", "silent"),
}

# The operators besides the one who runs the demo (its OS login, global_admin), with their users.
OPERATORS = (
    ("sam", "service_admin", "Sam Okafor"),
    ("sys", "system_admin", "Sybil Marsh"),
    ("vic", "viewer", "Victor Lindqvist"),
)
ADMIN_USER = "Dana Whitfield"
BRANCH_MANAGER = "Priya Raman"
WAREHOUSE_MANAGER = "Tomás Herrera"
SALES_MANAGER = "Grace Whitaker"
NAMED_STAFF = (ADMIN_USER, *(name for _, _, name in OPERATORS), BRANCH_MANAGER, WAREHOUSE_MANAGER,
               SALES_MANAGER)

FIRST_NAMES = (
    "Aaliyah", "Adam", "Aisha", "Alberto", "Aleksander", "Amelia", "Ana", "Anders", "Arjun", "Ava",
    "Ben", "Bianca", "Caleb", "Camille", "Chen", "Chloe", "Connor", "Dmitri", "Elena", "Eli",
    "Emeka", "Emma", "Fatima", "Felix", "Freya", "Gabriel", "Hana", "Harper", "Hugo", "Ines",
    "Isaac", "Jade", "James", "Jonas", "Julia", "Kai", "Kenji", "Laila", "Leo", "Lucia",
    "Mahmoud", "Maja", "Marcus", "Maria", "Mateo", "Mei", "Mohammed", "Nadia", "Nathan", "Niamh",
    "Noah", "Olivia", "Omar", "Oscar", "Paula", "Rafael", "Rhys", "Rosa", "Ruth", "Sana",
    "Sebastian", "Sofia", "Stefan", "Tariq", "Thea", "Theo", "Valentina", "Wei", "Yara", "Zoe",
)
LAST_NAMES = (
    "Abbott", "Adeyemi", "Andersson", "Bauer", "Bennett", "Brennan", "Castillo", "Chowdhury",
    "Clarke", "Costa", "Dubois", "Duarte", "Ellis", "Eriksen", "Fischer", "Fitzgerald", "Garcia",
    "Gallagher", "Haddad", "Hansen", "Hughes", "Ibrahim", "Ito", "Jansen", "Kaur", "Kowalski",
    "Larsen", "Lee", "Lopez", "Mahler", "Marsh", "Mbeki", "Moreau", "Murphy", "Nakamura", "Novak",
    "Nowak", "O'Brien", "Okonkwo", "Olsen", "Patel", "Petrov", "Quinn", "Ramos", "Reid", "Rossi",
    "Santos", "Schmidt", "Sharma", "Silva", "Sullivan", "Suzuki", "Tanaka", "Thompson", "Turner",
    "Varga", "Vasquez", "Walsh", "Weber", "Wong", "Yilmaz", "Young", "Zhang", "Zielinski",
)

# Users per profile, the named staff included.
HEAD_OFFICE_USERS = 200
BRANCH_USERS = 40
LEGACY_USERS = 14
WAREHOUSE_USERS = 6
SALES_USERS = 30  # on Exchange Online, approved as they are created (R6)
OAUTH_USERS = 8  # on Exchange Online (OAuth2), the one whose grant is missing included
UNGRANTED_USER = "Noor Haddad"  # the app was never given access to this mailbox

# (name, local part, profile, owner)
QUEUES = (
    ("Customer Support", "support", HEAD_OFFICE, ADMIN_USER),
    ("Orders", "orders", HEAD_OFFICE, SALES_MANAGER),
    ("Billing", "billing", HEAD_OFFICE, "Sam Okafor"),
    ("Accounts Payable", "accounts-payable", HEAD_OFFICE, "Sam Okafor"),
    ("Human Resources", "hr", HEAD_OFFICE, "Victor Lindqvist"),
    ("IT Helpdesk", "helpdesk", HEAD_OFFICE, ADMIN_USER),
    ("Returns", "returns", HEAD_OFFICE, SALES_MANAGER),
    ("Careers", "careers", HEAD_OFFICE, "Victor Lindqvist"),
    ("Press Office", "press", HEAD_OFFICE, ADMIN_USER),
    ("Fleet Bookings", "fleet", HEAD_OFFICE, "Sybil Marsh"),
    ("Branch Deliveries", "deliveries", BRANCH, BRANCH_MANAGER),
    ("Warehouse Dispatch", "dispatch", WAREHOUSE, WAREHOUSE_MANAGER),
)
QUEUES_DELETING_AFTER_PROCESSING = ("returns", "careers")
QUEUES_PENDING = ("careers", "press")

FORWARD_MAILBOX = ("Inbound forwarding", "forwarding")
FORWARDED_USERS = 8  # head office users whose incoming mail arrives through the forward mailbox
ACT_ON_IMAP_USERS = 2  # head office users set to synchronize ACT, which IMAP cannot (R12)
PENDING_USERS = 18  # head office users waiting for approval
REJECTED_USERS = 2
UNTESTED_USERS = 40  # approved head office users nobody has tested yet
TESTED_WHILE_PENDING = 3  # pending users tested anyway: they fail NOT_APPROVED (R9)
WRONG_PASSWORDS = ("Summer2023!", "fernhill-demo-old", "Welcome1", "Password123")
BRANCH_USERS_WITHOUT_PASSWORD = 1
INFORMATION_ALERTS_KEPT = 10  # the newest "connected" alerts; older ones were read and dismissed

SEED_TEST_THREADS = 32


@dataclass
class DemoOrganisation:
    """The addresses of the demo's mailboxes, by the part they play."""

    users: dict[str, str] = field(default_factory=dict)  # name -> address
    groups: dict[str, list[str]] = field(default_factory=dict)  # profile name -> user addresses
    queues: dict[str, str] = field(default_factory=dict)  # local part -> address
    forward_mailbox: str = ""
    forwarded: list[str] = field(default_factory=list)
    act_on_imap: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)
    wrong_password: list[str] = field(default_factory=list)
    without_password: list[str] = field(default_factory=list)
    ungranted: str = ""  # on Exchange Online (OAuth2): the app may not open it (OAUTH_PERMISSION_MISSING)


def address(local_part: str) -> str:
    return f"{local_part}@{DOMAIN}"


def plan() -> DemoOrganisation:
    """Who is who in the demo organisation (no database needed)."""
    generator = random.Random(RANDOM_SEED)
    people = list(NAMED_STAFF)
    taken = set(people)
    wanted = HEAD_OFFICE_USERS + BRANCH_USERS + LEGACY_USERS + WAREHOUSE_USERS + SALES_USERS
    while len(people) < wanted:
        name = f"{generator.choice(FIRST_NAMES)} {generator.choice(LAST_NAMES)}"
        if name not in taken:
            taken.add(name)
            people.append(name)
    organisation = DemoOrganisation()
    used_locals: set[str] = set()
    for name in people:
        organisation.users[name] = address(_unique_local_part(name, used_locals))

    others = [name for name in people if name not in NAMED_STAFF]
    generator.shuffle(others)
    head_office_staff = [ADMIN_USER, *(name for _, _, name in OPERATORS)]
    taking = iter(others)

    def take(count: int) -> list[str]:
        return [next(taking) for _ in range(count)]

    group_names = {
        HEAD_OFFICE: head_office_staff + take(HEAD_OFFICE_USERS - len(head_office_staff)),
        BRANCH: [BRANCH_MANAGER] + take(BRANCH_USERS - 1),
        LEGACY: take(LEGACY_USERS),
        WAREHOUSE: [WAREHOUSE_MANAGER] + take(WAREHOUSE_USERS - 1),
        EXCHANGE: [SALES_MANAGER] + take(SALES_USERS - 1),
    }
    organisation.groups = {profile: [organisation.users[n] for n in names] for profile, names in group_names.items()}
    organisation.queues = {local: address(local) for _, local, _, _ in QUEUES}
    organisation.forward_mailbox = address(FORWARD_MAILBOX[1])

    # Head office roles, never the named staff: they must stay approved and working.
    ordinary = iter(organisation.groups[HEAD_OFFICE][len(head_office_staff):])

    def pick(count: int) -> list[str]:
        return [next(ordinary) for _ in range(count)]

    organisation.forwarded = pick(FORWARDED_USERS)
    organisation.act_on_imap = pick(ACT_ON_IMAP_USERS)
    organisation.pending = pick(PENDING_USERS)
    organisation.rejected = pick(REJECTED_USERS)
    organisation.untested = pick(UNTESTED_USERS)
    branch = organisation.groups[BRANCH][1:]
    organisation.wrong_password = branch[:len(WRONG_PASSWORDS)]
    organisation.without_password = branch[len(WRONG_PASSWORDS):len(WRONG_PASSWORDS) + BRANCH_USERS_WITHOUT_PASSWORD]
    _plan_oauth_users(organisation, generator, taken, used_locals)
    return organisation


def _plan_oauth_users(organisation: DemoOrganisation, generator: random.Random, taken: set[str],
                      used_locals: set[str]) -> None:
    """The users of Exchange Online (OAuth2), drawn after everyone else so that the rest of the
    organisation stays as it was before this profile existed."""
    names = [UNGRANTED_USER]
    taken.add(UNGRANTED_USER)
    while len(names) < OAUTH_USERS:
        name = f"{generator.choice(FIRST_NAMES)} {generator.choice(LAST_NAMES)}"
        if name not in taken:
            taken.add(name)
            names.append(name)
    for name in names:
        organisation.users[name] = address(_unique_local_part(name, used_locals))
    organisation.groups[EXCHANGE_OAUTH] = [organisation.users[name] for name in names[1:] + names[:1]]
    organisation.ungranted = organisation.users[UNGRANTED_USER]
    if organisation.ungranted != identity_provider.UNGRANTED_MAILBOX:
        raise AssertionError("the identity provider's ungranted mailbox is not the demo's")


def _unique_local_part(name: str, used: set[str]) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    base = ".".join(part for part in "".join(c for c in ascii_name.lower() if c.isalnum() or c == " ").split())
    local, number = base, 1
    while local in used:
        number += 1
        local = f"{base}{number}"
    used.add(local)
    return local


def seed(login: str, ports: SandboxPorts, ca_file: Path, store: SecretStore) -> None:
    """Fill the open, empty database with the demo organisation, ``login`` being its global_admin,
    and run a first Test & Enable against the sandbox servers at ``ports``."""
    organisation = plan()
    admin = operators.initialise(login=login)
    _create_profiles(admin, ports, ca_file, store)
    settings.update(admin, default_profile=HEAD_OFFICE, retry_attempts=3, retry_interval_minutes=2)
    name_of = {user_address: name for name, user_address in organisation.users.items()}
    rows = {profile: [(name_of[a], a) for a in addresses] for profile, addresses in organisation.groups.items()}
    with tempfile.TemporaryDirectory(prefix="mbxtui-demo-") as scratch:
        _import(admin, Path(scratch) / "staff.csv", "users",
                rows[HEAD_OFFICE] + rows[BRANCH] + rows[LEGACY] + rows[WAREHOUSE])
        # R6: mailboxes made while the default profile is Exchange Online are approved at once.
        settings.update(admin, default_profile=EXCHANGE)
        _import(admin, Path(scratch) / "sales.csv", "users", rows[EXCHANGE])
        settings.update(admin, default_profile=EXCHANGE_OAUTH)
        _import(admin, Path(scratch) / "oauth.csv", "users", rows[EXCHANGE_OAUTH])
        settings.update(admin, default_profile=HEAD_OFFICE)
        _import(admin, Path(scratch) / "queues.csv", "queues",
                [(name, organisation.queues[local], organisation.users[owner]) for name, local, _, owner in QUEUES])
    _set_profile_owners(admin, organisation)
    for profile in (BRANCH, LEGACY, WAREHOUSE):
        queues_here = [organisation.queues[local] for _, local, on, _ in QUEUES if on == profile]
        bulk.bulk_edit(admin, Selection.of_emails(organisation.groups[profile] + queues_here), profile=profile)
    bulk.bulk_edit(admin, Selection.of_emails(organisation.groups[EXCHANGE]), act="server_side_sync")
    for local in QUEUES_DELETING_AFTER_PROCESSING:
        mailboxes.edit(admin, organisation.queues[local], delete_after_processing=True)

    mailboxes.create_forward_mailbox(admin, name=FORWARD_MAILBOX[0], email=organisation.forward_mailbox,
                                     profile=HEAD_OFFICE, delete_after_processing=True,
                                     owner=organisation.users[ADMIN_USER])
    bulk.bulk_edit(admin, Selection.of_emails(organisation.forwarded), incoming="forward_mailbox")
    bulk.bulk_edit(admin, Selection.of_emails(organisation.act_on_imap), act="server_side_sync")
    _set_branch_passwords(admin, organisation, store)
    admin = _add_operators(admin, login, organisation)

    service_admin = operators.current_actor(login="sam") if login != "sam" else admin
    waiting = set(organisation.pending) | set(organisation.rejected) | {
        organisation.queues[local] for local in QUEUES_PENDING}
    to_approve = [a for a in _all_addresses(organisation) if a not in waiting]
    bulk.approve(service_admin, Selection.of_emails(to_approve))
    bulk.reject(service_admin, Selection.of_emails(organisation.rejected))

    system_admin = operators.current_actor(login="sys") if login != "sys" else admin
    _first_test_run(system_admin, organisation, store)
    _dismiss_older_information_alerts(admin)


def _create_profiles(admin: Actor, ports: SandboxPorts, ca_file: Path, store: SecretStore) -> None:
    def sides(name: str) -> dict[str, object]:
        incoming, outgoing = PROFILE_PORTS[name]
        return {"incoming_host": HOST, "incoming_port": getattr(ports, incoming),
                "outgoing_host": HOST, "outgoing_port": getattr(ports, outgoing), "ca_file": str(ca_file)}

    service_account = {"incoming_auth": "profile", "outgoing_auth": "profile", "username": SERVICE_LOGIN}
    profiles.create(admin, name=HEAD_OFFICE, type="imap_smtp", incoming_tls="implicit", outgoing_tls="starttls",
                    max_connections=20, timeout_seconds=10, verify_delivery=True, **service_account,
                    **sides(HEAD_OFFICE))
    profiles.create(admin, name=BRANCH, type="pop3_smtp", incoming_tls="starttls", outgoing_tls="implicit",
                    incoming_auth="mailbox", outgoing_auth="mailbox", max_connections=10, timeout_seconds=10,
                    **sides(BRANCH))
    profiles.create(admin, name=EXCHANGE, type="exchange_online", incoming_tls="implicit", outgoing_tls="starttls",
                    incoming_auth="oauth2", outgoing_auth="oauth2", max_connections=20, timeout_seconds=10,
                    **sides(EXCHANGE))
    profiles.create(admin, name=LEGACY, type="imap_smtp", incoming_tls="starttls", outgoing_tls="implicit",
                    max_connections=5, timeout_seconds=10, **service_account, **sides(LEGACY))
    profiles.create(admin, name=WAREHOUSE, type="imap_smtp", incoming_tls="starttls", outgoing_tls="starttls",
                    max_connections=8, timeout_seconds=3, **service_account, **sides(WAREHOUSE))
    for name in (HEAD_OFFICE, LEGACY, WAREHOUSE):
        credentials.set_profile_secret(admin, name, SERVICE_PASSWORD, store)
    credentials.set_profile_secret(admin, EXCHANGE, OAUTH2_TOKEN, store, what=credentials.TOKEN)
    # Exchange Online as IMAP and SMTP reach it (processing reads IMAP), with app-only tokens.
    profiles.create(admin, name=EXCHANGE_OAUTH, type="imap_smtp", incoming_tls="implicit",
                    outgoing_tls="starttls", incoming_auth="oauth2", outgoing_auth="oauth2",
                    oauth_provider="microsoft365", oauth_tenant=identity_provider.TENANT,
                    oauth_client_id=identity_provider.CLIENT_ID, oauth_issuer=ports.oauth_url,
                    max_connections=20, timeout_seconds=10, verify_delivery=True, **sides(EXCHANGE_OAUTH))
    # As `mbxtui profile set-oauth NAME --client-secret-stdin` stores it: in the keyring only.
    credentials.set_profile_oauth(admin, EXCHANGE_OAUTH, "client_secret", identity_provider.CLIENT_SECRET, store)


def _set_profile_owners(admin: Actor, organisation: DemoOrganisation) -> None:
    owners = {HEAD_OFFICE: ADMIN_USER, EXCHANGE: SALES_MANAGER, EXCHANGE_OAUTH: SALES_MANAGER, LEGACY: ADMIN_USER,
              BRANCH: BRANCH_MANAGER, WAREHOUSE: WAREHOUSE_MANAGER}
    for profile, owner in owners.items():
        profiles.update(admin, profile, owner=organisation.users[owner])


def _import(admin: Actor, path: Path, kind: str, rows: list[tuple[str, ...]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(imports.COLUMNS[kind])
        writer.writerows(rows)
    imports.import_csv(admin, kind, path)


def _set_branch_passwords(admin: Actor, organisation: DemoOrganisation, store: SecretStore) -> None:
    """Branch POP3 logs in with each mailbox's own password: most are right, a few are out of
    date, and one was never set."""
    wrong = dict(zip(organisation.wrong_password, WRONG_PASSWORDS))
    for mailbox in organisation.groups[BRANCH] + [organisation.queues["deliveries"]]:
        if mailbox not in organisation.without_password:
            credentials.set_mailbox_secret(admin, mailbox, wrong.get(mailbox, MAILBOX_PASSWORD), store)


def _add_operators(admin: Actor, login: str, organisation: DemoOrganisation) -> Actor:
    for operator_login, role, name in OPERATORS:
        if operator_login != login:
            operators.add(admin, operator_login, role, organisation.users[name])
    # initialise() makes the first operator without a user; the demo's administrator is Dana, so
    # that "My Mailboxes" shows hers.
    dana = mailboxes.get(organisation.users[ADMIN_USER]).user_id
    Operator.update(user=dana).where(Operator.login == login).execute()
    return operators.current_actor(login=login)


def _all_addresses(organisation: DemoOrganisation) -> list[str]:
    users = [a for addresses in organisation.groups.values() for a in addresses]
    return users + list(organisation.queues.values()) + [organisation.forward_mailbox]


def _first_test_run(actor: Actor, organisation: DemoOrganisation, store: SecretStore) -> None:
    """Test & Enable most mailboxes, as if it had been done before: the forward mailbox first,
    since the mailboxes it receives for pass only once it is enabled (R10)."""
    runner = EnablementRunner(store, threads=SEED_TEST_THREADS)
    enablement.schedule(actor, Selection.of_emails([organisation.forward_mailbox]), "Test & Enable (forward mailbox)")
    runner.run(until_idle=True)
    skipped = {*organisation.untested, *organisation.pending[TESTED_WHILE_PENDING:], *organisation.rejected,
               *(organisation.queues[local] for local in QUEUES_PENDING), organisation.forward_mailbox}
    enablement.schedule(actor, Selection.of_emails([a for a in _all_addresses(organisation) if a not in skipped]))
    runner.run(until_idle=True)


def _dismiss_older_information_alerts(admin: Actor) -> None:
    information = (Alert.select(Alert.id).where((Alert.level == "information") & (Alert.dismissed == False))  # noqa: E712
                   .order_by(Alert.created_on.desc(), Alert.id.desc()).offset(INFORMATION_ALERTS_KEPT))
    older = [alert.id for alert in information]
    if older:
        alerts.dismiss(admin, older)
