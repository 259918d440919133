"""The token state processes record for the console (core/oauth/token_state.py): a busy process
writes a profile's row at most once a minute while the outcome stays the same, a changed outcome at
once; a token keeps the last error and an error the last token, unless either was for other client
settings; a profile's detail ignores a state recorded for settings it no longer has."""

from __future__ import annotations

from dataclasses import replace

from mbxtui.core.oauth.settings import settings_of
from mbxtui.core.oauth.token_state import StateRecorder
from mbxtui.core.permissions import Actor
from mbxtui.core.services import profiles
from tests.core.support import count

OAUTH_PROFILE = dict(name="M365", type="imap_smtp", incoming_host="127.0.0.1", incoming_port=993,
                     incoming_tls="implicit", incoming_auth="oauth2", outgoing_host="127.0.0.1", outgoing_port=587,
                     outgoing_tls="starttls", outgoing_auth="oauth2", oauth_provider="microsoft365",
                     oauth_tenant="contoso.onmicrosoft.com", oauth_client_id="6731de76")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def token_of(admin: Actor) -> dict:
    return profiles.show(admin, "M365").as_dict()["oauth"]["token"]


def lifetime(token: dict) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(token["expires_on"]) - datetime.fromisoformat(token["obtained_on"])).total_seconds()


def test_the_same_outcome_is_written_at_most_once_a_minute_and_a_new_one_at_once(admin: Actor):
    profiles.create(admin, **OAUTH_PROFILE)
    settings = settings_of(profiles.get("M365"))
    clock = Clock()
    recorder = StateRecorder(clock=clock)
    assert token_of(admin) == dict.fromkeys(("obtained_on", "expires_on", "error_code", "error_text", "error_on"))

    recorder.obtained(settings, 3600)
    assert lifetime(token_of(admin)) == 3600
    clock.now += 59
    recorder.obtained(settings, 1800)  # a token for another mailbox a minute later: not written
    assert lifetime(token_of(admin)) == 3600
    clock.now += 2
    recorder.obtained(settings, 1800)
    assert lifetime(token_of(admin)) == 1800

    recorder.failed(settings, "OAUTH_PROVIDER_UNREACHABLE", "The provider did not answer.")
    token = token_of(admin)
    assert (token["error_code"], token["error_text"]) == ("OAUTH_PROVIDER_UNREACHABLE", "The provider did not answer.")
    assert lifetime(token) == 1800  # the last token is kept beside the error
    recorder.failed(settings, "OAUTH_CLIENT_REJECTED", "The provider refused the client.")  # another code: at once
    assert token_of(admin)["error_code"] == "OAUTH_CLIENT_REJECTED"
    recorder.failed(settings, "OAUTH_PROVIDER_UNREACHABLE", "Again.")
    recorder.failed(settings, "OAUTH_PROVIDER_UNREACHABLE", "And again.")  # the same outcome: not written
    assert token_of(admin)["error_text"] == "Again."
    assert count("oauth_token_state") == 1


def test_a_state_of_other_client_settings_is_not_shown_nor_kept(admin: Actor):
    profiles.create(admin, **OAUTH_PROFILE)
    settings = settings_of(profiles.get("M365"))
    recorder = StateRecorder()
    recorder.failed(settings, "OAUTH_CLIENT_REJECTED", "The provider refused the client.")
    profiles.update(admin, "M365", oauth_client_id="0f1e2d3c")
    assert token_of(admin)["error_code"] is None  # recorded for the old client id
    recorder.obtained(replace(settings, client_id="0f1e2d3c"), 3600)
    token = token_of(admin)
    assert token["obtained_on"] and token["error_code"] is None and token["error_on"] is None


def test_a_profile_gone_or_no_database_leaves_the_token_alone(admin: Actor):
    profiles.create(admin, **OAUTH_PROFILE)
    settings = replace(settings_of(profiles.get("M365")), profile_id=999_999)
    StateRecorder().obtained(settings, 3600)  # no such profile: nothing written, nothing raised
    assert count("oauth_token_state") == 0
