"""OAuth2 tokens across jumps of the wall clock, against the lab's identity provider
(tests/lab/oauth_provider.py, in this process: its clock does not jump):

- an app token and a mailbox's delegated token live ``expires_in`` on the monotonic clock (the core's
  injectable clock): 3 h back, one whose life ran out is renewed, not used; 3 h forward, the one in
  hand is kept, without an error; a refresh is dated by that clock (the refresh token's expiry and
  its warning are counted from it);
- a Google token's life is its ``expires_in`` even when the wall clock jumps while it is fetched,
  whatever the time zone (before: 3 h too long after a forward jump, renewed at every use after a
  backward one, 5 h too long in New York); an assertion signed by a clock 3 h off (a certificate's,
  a service account's), which the provider refuses, is said to be the host clock's fault (before:
  "set the client's secret or certificate again"); a Microsoft 365 device-code flow waits for the
  person across a forward jump (before: "the code expired" at once) and a backward one (before: msal's
  "Attempted too soon" warning on the person's terminal). Both in a process of their own
  whose wall clock libfaketime moves, the monotonic clock left alone as a real jump leaves it;
- `profile diagnose` says how long a token has left by the core's clock, not this host's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mbxtui.core.oauth import delegated, tokens
from mbxtui.core.oauth.client_credentials import certificate_from_pem, service_account_from_json
from mbxtui.core.oauth.settings import OAuthSettings
from mbxtui.core.secret_value import Secret
from tests.hardening.test_clock_jumps import FakeTime, MovableWall, movable  # noqa: F401  (fixture)
from tests.backends import ON_POSTGRES
from tests.integration.conftest import REPO_ROOT
from tests.lab.oauth_fixtures import lab_certificates, provider  # noqa: F401  (fixtures)
from tests.lab.oauth_provider import OAuthProvider, client_certificate

TENANT = "7d2e-lab-tenant"
SECRET = "lab-client-secret~Jm4"
THREE_HOURS = 3 * 3600.0
LIFETIME = 600  # the provider's tokens; renewed RENEW_BEFORE (300 s) or half their life before expiry
DEADLINE = 60.0

pytestmark = pytest.mark.skipif(ON_POSTGRES, reason="no database in play: the tokens live in memory")


def _m365(provider: OAuthProvider, client_id: str) -> OAuthSettings:
    return OAuthSettings(profile_id=1, provider="microsoft365", tenant=TENANT, client_id=client_id,
                         issuer=provider.url, scope="https://outlook.office365.com/.default",
                         ca_file=str(provider.certificates.ca_file), timeout=5.0)


def test_an_app_token_lives_its_expires_in_on_the_monotonic_clock_across_jumps(provider: OAuthProvider,
                                                                               movable: MovableWall):
    provider.register(TENANT, "app-jumps", secret=SECRET)
    provider.token_lifetime = LIFETIME
    settings = _m365(provider, "app-jumps")

    def token() -> str:
        return tokens.token(settings, "client_secret", Secret(SECRET)).reveal()

    first = token()
    movable.jump(THREE_HOURS)
    assert token() == first, "a forward jump keeps the token in hand"
    movable.jump(-2 * THREE_HOURS)  # 3 h behind where it was fetched
    movable.advance(LIFETIME - 301)
    assert token() == first and provider.requests_of("app-jumps") == 1
    movable.advance(LIFETIME)  # its expires_in ran out, though the wall clock reads 3 h before it was fetched
    second = token()
    assert second != first and provider.introspect(second)["active"]
    assert provider.requests_of("app-jumps") == 2


def test_a_mailbox_token_lives_its_expires_in_on_the_monotonic_clock_across_jumps(provider: OAuthProvider,
                                                                                  movable: MovableWall):
    client = provider.register(TENANT, "device-app")  # a public client, as mailbox authorize uses
    provider.token_lifetime = LIFETIME
    with provider._lock:
        refresh_token = provider._user_tokens(client, "ann@example.test", "")["refresh_token"]
    settings = _m365(provider, "device-app")
    saved: list[str] = []

    def token(refresh: str) -> str:
        return delegated.token(settings, 7, "ann@example.test", Secret(refresh),
                               lambda rotated: saved.append(rotated.reveal())).reveal()

    first = token(refresh_token)
    movable.jump(THREE_HOURS)
    assert token(saved[-1]) == first and provider.refreshes == 1, "a forward jump keeps the token in hand"
    movable.jump(-2 * THREE_HOURS)
    movable.advance(LIFETIME)
    second = token(saved[-1])
    assert second != first and provider.refreshes == 2 and provider.introspect(second)["email"] == "ann@example.test"
    # Its record (the refresh token's expiry, the OAUTH_EXPIRING warning) is dated by the core's clock.
    [outcome] = delegated.refresh_outcomes()
    assert abs(outcome.at - movable.wall) < 1.5 and outcome.rotated


# -- a process whose wall clock jumps -------------------------------------------------------------

_FETCHES = """
import json, sys
from mbxtui.core.oauth import providers
from mbxtui.core.oauth.settings import OAuthSettings
from mbxtui.core.oauth.tokens import TokenError
from mbxtui.core.secret_value import Secret
for line in sys.stdin:
    asked = json.loads(line)
    try:
        issued = providers.fetch(OAuthSettings(**asked["settings"]), asked["kind"], Secret(asked["credential"]),
                                 asked["subject"])
        print(issued.expires_in, flush=True)
    except TokenError as refused:
        print("refused:", refused.message, flush=True)
"""


def test_a_token_fetched_across_a_jump_lives_its_expires_in_and_a_misdated_assertion_names_the_clock(
        provider: OAuthProvider, tmp_path: Path):
    provider.token_lifetime = LIFETIME
    key_file = provider.service_account("jumps@lab.iam.gserviceaccount.com")
    google = dict(settings=dict(profile_id=3, provider="google", tenant=None, client_id=None, issuer=None,
                                scope="https://mail.google.com/", ca_file=str(provider.certificates.ca_file),
                                timeout=5.0),
                  kind="service_account", subject="ann@example.test",
                  credential=service_account_from_json("--service-account-file", json.dumps(key_file).encode()))
    certificate, key = client_certificate()
    provider.register(TENANT, "app-cert", certificate_pem=certificate)
    microsoft = dict(settings=_m365(provider, "app-cert").__dict__, kind="certificate", subject=None,
                     credential=certificate_from_pem("--certificate-file", key + certificate))
    fake = FakeTime(tmp_path)
    # The clock jumps while Google answers: 3 h forward, then (set right again) 3 h back.
    offsets = iter(["+3h", "-3h"])
    answer = provider.jwt_bearer

    def jumping(endpoint: str, form: dict[str, str]) -> tuple[int, dict]:
        offset = next(offsets, None)
        if offset is not None:
            fake.set(offset)
        return answer(endpoint, form)

    provider.jwt_bearer = jumping  # type: ignore[method-assign]
    env = {**fake.env({"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}), "TZ": "America/New_York"}
    fetches = subprocess.Popen([sys.executable, "-c", _FETCHES], env=env, cwd=REPO_ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    said: list[str] = []
    try:
        assert fetches.stdin is not None and fetches.stdout is not None
        # Then assertions signed by a clock 3 h ahead (Google's) and 3 h behind (Entra ID's, 10 minutes long).
        for offset, asked in (("+0", google), ("+0", google), ("+3h", google), ("-3h", microsoft)):
            fake.set(offset)
            fetches.stdin.write(json.dumps(asked) + "\n")
            fetches.stdin.flush()
            said.append(fetches.stdout.readline().strip())
        _, errors = fetches.communicate(timeout=DEADLINE)
    finally:
        if fetches.poll() is None:
            fetches.kill()
            fetches.communicate()
    assert fetches.returncode == 0 and "" not in said, (said, errors)
    assert all(LIFETIME - 5 < float(life) <= LIFETIME for life in said[:2]), said
    for refused, where in zip(said[2:], ("Google's token endpoint", f"{provider.url}/{TENANT}")):
        assert refused.startswith(f"refused: the OAuth provider {where} refused the signed assertion"), refused
        assert "this host's clock dates it" in refused and "timedatectl" in refused, refused


# libfaketime 0.9.10 moves time.sleep's monotonic deadline too (clock_nanosleep, TIMER_ABSTIME), which
# a real jump does not: 3 h forward it fails with EINVAL. msal's polling sleeps on an Event instead.
_MICROSOFT_DEVICE_FLOW = """
import json, sys, threading, time
time.sleep = lambda seconds: threading.Event().wait(seconds)
from mbxtui.core.oauth import delegated
from mbxtui.core.oauth.settings import OAuthSettings
settings = OAuthSettings(**json.loads(sys.argv[1]))
try:
    grant = delegated.device_flow(settings, "ann@example.test", lambda code: print(code.user_code, flush=True))
    print("token", grant.access_token.reveal(), flush=True)
except delegated.DeviceFlowEnded as ended:
    print("ended", ended.message, flush=True)
"""


def test_a_microsoft_device_flow_waits_for_the_person_across_jumps_either_way(provider: OAuthProvider,
                                                                           tmp_path: Path):
    provider.register(TENANT, "device-app")
    settings = _m365(provider, "device-app")
    fake = FakeTime(tmp_path)
    env = fake.env({"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)})
    flow = subprocess.Popen([sys.executable, "-c", _MICROSOFT_DEVICE_FLOW, json.dumps(settings.__dict__)],
                            env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert flow.stdout is not None
        user_code = flow.stdout.readline().strip()
        assert user_code, flow.communicate(timeout=DEADLINE)
        ends = time.monotonic() + 20.0
        # The code stays valid for ten minutes at the provider, whose clock does not jump.
        # 3 h forward after the first poll, back to 3 h behind after the second, approved after the third.
        for offset, polls in (("+3h", 1), ("-3h", 2), (None, 3)):
            while provider.device(user_code).polls < polls and flow.poll() is None and time.monotonic() < ends:
                time.sleep(0.05)
            if offset:
                fake.set(offset)
        provider.approve(user_code, "ann@example.test")
        said, errors = flow.communicate(timeout=DEADLINE)
    finally:
        if flow.poll() is None:
            flow.kill()
            flow.communicate()
    assert said.startswith("token ") and "Attempted too soon" not in errors, (said, errors)
    assert provider.introspect(said.split()[1])["email"] == "ann@example.test"


def test_profile_diagnose_counts_a_tokens_life_by_the_core_clock(movable: MovableWall):
    """`profile diagnose` says how long the token has left by the core's clock (on PostgreSQL the
    server's), as the console's "valid until" is counted, where it used this host's: 3 h apart,
    a token with 10 min left showed 3 h more or less than the database's clock gives it."""
    from mbxtui.cli.profile_diagnose import _expiry

    expires_at = datetime.fromtimestamp(movable.wall + 600, timezone.utc).isoformat(timespec="seconds")
    movable.jump(-THREE_HOURS)  # the core's clock 3 h behind this host's, as a database server's can be
    assert _expiry(expires_at) == f"{expires_at} (in 190 min)"
    movable.jump(2 * THREE_HOURS)
    assert _expiry(expires_at) == f"{expires_at} (170 min ago)"
