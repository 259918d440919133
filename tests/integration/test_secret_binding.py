"""R34 end to end: a secret goes only to the endpoint it was set for, against the real mail lab and
a listener an attacker controls. Finding 2 of the security review: a system_admin (who never sees
a password) pointed a profile at their own listener, moved mailboxes onto it and ran Test &
Enable; the listener received every password."""

from __future__ import annotations

import json
import shutil

import pytest

from mbxtui.core.enums import Role
from mbxtui.core.errors import InvalidInput, PermissionDenied
from mbxtui.core.jobs import queue as jobs
from mbxtui.core.models import Profile
from mbxtui.core.permissions import Actor
from mbxtui.core.services import audit, bulk, enablement, mailboxes, profiles
from mbxtui.core.services.selection import Selection
from tests.hardening.hostile import ABSENT, HostileServer, Plan, imap_dialogue, secret_leaks, smtp_dialogue
from tests.integration.conftest import Org
from tests.integration.test_test_enable import ALICE, BOB, enabled, failure_codes

pytestmark = pytest.mark.servers

SYD = Actor(login="syd", role=Role.SYSTEM_ADMIN)


def last_failures(org: Org, email: str) -> dict[str, tuple[str, str, str]]:
    """Direction -> (step, code, message) of the mailbox's last finished test."""
    result = jobs.last_result(org.row(email).id)
    assert result is not None, f"{email} has no finished test"
    return {direction: (probe["failure"]["step"], probe["failure"]["code"], probe["failure"]["message"])
            for direction, probe in result.directions.items() if probe["failure"]}


def test_a_system_admin_who_moves_a_mailbox_onto_their_own_listener_harvests_no_password(org: Org):
    org.profile("Head office")
    org.mailbox(ALICE, "Head office")
    password = org.lab.users[ALICE]
    plaintext = Plan(starttls=ABSENT)
    with HostileServer(imap_dialogue(plaintext)) as imap_listener, \
            HostileServer(smtp_dialogue(plaintext)) as smtp_listener:
        profiles.create(SYD, name="Harvest", type="imap_smtp",
                        incoming_host="127.0.0.1", incoming_port=imap_listener.port, incoming_tls="none",
                        incoming_auth="mailbox", outgoing_host="127.0.0.1", outgoing_port=smtp_listener.port,
                        outgoing_tls="none", outgoing_auth="mailbox", timeout_seconds=5)
        bulk.bulk_edit(SYD, Selection.of_emails([ALICE]), profile="Harvest")
        enablement.schedule(SYD, Selection.of_emails([ALICE]))
        org.runner().run()
    assert secret_leaks(imap_listener.received_in_clear, password) == []
    assert secret_leaks(smtp_listener.received_in_clear, password) == []
    assert imap_listener.received_in_clear == b"" and smtp_listener.received_in_clear == b""
    failures = last_failures(org, ALICE)
    assert set(failures) == {"incoming", "outgoing"}
    for direction, port in (("incoming", imap_listener.port), ("outgoing", smtp_listener.port)):
        step, code, message = failures[direction]
        assert (step, code) == ("check", "NO_CREDENTIALS")
        assert message == (f"the endpoint changed since the password of mailbox {ALICE} was set, so it was not "
                           f"sent to 127.0.0.1:{port}: confirm it for the new endpoint with `mbxtui mailbox "
                           f"confirm-secret {ALICE}`, or set it again")
    assert enabled(org, ALICE) == {"incoming": False, "outgoing": False, "act": False}
    assert mailboxes.show(org.admin, ALICE).password_set  # the secret stays in the keyring


def test_a_changed_endpoint_fails_until_confirmed_then_passes_against_the_real_dovecot(org: Org):
    org.profile("Head office")
    org.mailbox(ALICE, "Head office")
    org.mailbox(BOB, "Head office")
    assert org.test_enable(ALICE).passed == 1

    # Same servers, another way in: IMAP with STARTTLS on its own port.
    profiles.update(org.admin, "Head office", incoming_port=org.lab.ports["imap"], incoming_tls="starttls")
    shown = org.cli("mailbox", "show", ALICE, "--json")
    assert '"secret_endpoint": "not confirmed"' in shown.stdout, shown.stdout
    org.test_enable(ALICE)
    assert failure_codes(org, ALICE) == {"incoming": "NO_CREDENTIALS", "outgoing": "NO_CREDENTIALS"}
    assert enabled(org, ALICE) == {"incoming": False, "outgoing": False, "act": False}

    confirmed = org.cli("mailbox", "confirm-secret", ALICE)
    assert confirmed.returncode == 0, confirmed.stderr
    assert confirmed.stdout.strip() == ("confirmed the secrets of 1 of 1 selected mailbox(es) for their profile's "
                                        "current endpoint")
    assert org.test_enable(ALICE).passed == 1
    assert enabled(org, ALICE) == {"incoming": True, "outgoing": True, "act": False}
    org.test_enable(BOB)  # confirmed one by one
    assert failure_codes(org, BOB) == {"incoming": "NO_CREDENTIALS", "outgoing": "NO_CREDENTIALS"}
    entry = audit.list_entries(org.admin, limit=5)
    assert any(e["action"] == "mailbox.confirm_secret" for e in entry)


@pytest.mark.parametrize("change", ["host", "port", "tls", "ca_file", "auth"])
def test_each_part_of_a_profile_endpoint_unconfirms_its_secrets(org: Org, change: str):
    org.profile("Master", incoming_auth="profile", outgoing_auth="profile",
                username=org.lab.master_login)
    org.mailbox(ALICE, "Master")
    assert org.test_enable(ALICE).passed == 1
    if change == "host":
        edit = {"incoming_host": "localhost"}
    elif change == "port":
        edit = {"outgoing_port": org.lab.ports["smtps"], "outgoing_tls": "implicit"}
    elif change == "tls":
        edit = {"incoming_port": org.lab.ports["imap"], "incoming_tls": "starttls"}
    elif change == "ca_file":
        copied = org.workdir / "the same CA elsewhere.pem"
        shutil.copyfile(org.lab.ca_file, copied)
        edit = {"ca_file": str(copied)}
    else:
        edit = {"outgoing_auth": "none"}
    profiles.update(org.admin, "Master", **edit)
    assert profiles.show(org.admin, "Master").secret_endpoint == "not confirmed"
    org.test_enable(ALICE)
    codes = failure_codes(org, ALICE)
    assert codes.get("incoming") == "NO_CREDENTIALS"
    message = last_failures(org, ALICE)["incoming"][2]
    assert message.startswith("the endpoint changed since the password of profile 'Master' was set")
    assert "`mbxtui profile confirm-secret Master`" in message

    confirmed = org.cli("profile", "confirm-secret", "Master")
    assert confirmed.returncode == 0, confirmed.stderr
    assert profiles.show(org.admin, "Master").secret_endpoint == "confirmed"
    if change in ("port", "tls", "ca_file"):
        assert org.test_enable(ALICE).passed == 1


def test_credentials_in_clear_to_a_host_off_this_machine_need_a_global_admin(org: Org):
    fields = dict(type="imap_smtp", incoming_host="192.0.2.10", incoming_port=143, incoming_tls="none",
                  incoming_auth="mailbox", outgoing_host=org.lab.host, outgoing_port=org.lab.ports["smtp"],
                  outgoing_tls="starttls", outgoing_auth="mailbox", ca_file=org.lab.ca_file, timeout_seconds=1)
    with pytest.raises(InvalidInput, match="^incoming-tls: none would send credentials in clear to 192.0.2.10:143"):
        profiles.create(SYD, name="Legacy", **fields)
    with pytest.raises(PermissionDenied, match="syd is system_admin"):
        profiles.create(SYD, name="Legacy", allow_plaintext_credentials=True, **fields)
    refused = org.cli("profile", "add", "--name", "Legacy", *[f"--{key.replace('_', '-')}={value}"
                                                             for key, value in fields.items() if key != "timeout_seconds"])
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "--allow-plaintext-credentials" in refused.stderr

    added = org.cli("profile", "add", "--name", "Legacy", "--allow-plaintext-credentials", "--json",
                    *[f"--{key.replace('_', '-')}={value}" for key, value in fields.items() if key != "timeout_seconds"])
    assert added.returncode == 0, added.stderr
    assert '"plaintext_credentials": "allowed"' in added.stdout
    profiles.update(org.admin, "Legacy", timeout_seconds=1)
    org.mailbox(ALICE, "Legacy")
    # As a database from before R34 holds such a profile: never confirmed for credentials in clear.
    Profile.update(plaintext_confirmed_for=None).where(Profile.name == "Legacy").execute()
    org.test_enable(ALICE)
    step, code, message = last_failures(org, ALICE)["incoming"]
    assert (step, code) == ("check", "NO_CREDENTIALS")
    assert message == ("credentials are not sent in clear to 192.0.2.10:143 (incoming TLS mode none, not a "
                       "loopback host): use TLS, or have a global_admin confirm it with `mbxtui profile edit "
                       "Legacy --allow-plaintext-credentials`")

    allowed = org.cli("profile", "edit", "Legacy", "--allow-plaintext-credentials")
    assert allowed.returncode == 0, allowed.stderr
    assert any(e["action"] == "profile.allow_plaintext_credentials" for e in audit.list_entries(org.admin, limit=3))
    org.test_enable(ALICE)
    assert last_failures(org, ALICE)["incoming"][1] != "NO_CREDENTIALS"  # now it really tries


def test_a_profile_test_does_not_send_the_profile_password_to_a_changed_endpoint(org: Org):
    org.profile("Master", incoming_auth="profile", outgoing_auth="profile", username=org.lab.master_login)
    with HostileServer(imap_dialogue(Plan(starttls=ABSENT))) as listener:
        profiles.update(SYD, "Master", incoming_port=listener.port, incoming_tls="none")
        tested = org.cli("profile", "test", "Master", "--json")
    assert tested.returncode == 3, tested.stderr
    assert secret_leaks(listener.received_in_clear, org.lab.master_password) == []
    assert listener.received_in_clear == b""
    incoming = json.loads(tested.stdout)["directions"]["incoming"]["failure"]
    assert (incoming["step"], incoming["code"]) == ("check", "NO_CREDENTIALS")
    assert "`mbxtui profile confirm-secret Master`" in incoming["message"]


def test_processing_sends_no_password_to_a_changed_endpoint_until_confirmed(org: Org):
    from mbxtui.core.sync.runner import SyncRunner

    org.profile("Head office", verify_delivery=False)
    org.mailbox(ALICE, "Head office", outgoing_method="none")
    assert org.test_enable(ALICE).passed == 1
    with HostileServer(imap_dialogue(Plan(starttls=ABSENT))) as listener:
        profiles.update(SYD, "Head office", incoming_port=listener.port, incoming_tls="none")
        summary = SyncRunner(org.store, clock=org.clock).run_once([ALICE], ignore_interval=True)
    [cycled] = summary.mailboxes
    assert (cycled.ok, cycled.error_code) == (False, "NO_CREDENTIALS"), cycled
    assert f"`mbxtui mailbox confirm-secret {ALICE}`" in (cycled.error or "")
    assert listener.received_in_clear == b""
    assert secret_leaks(listener.received_in_clear, org.lab.users[ALICE]) == []
