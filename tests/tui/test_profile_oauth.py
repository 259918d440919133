"""The profile detail names where a profile's OAuth2 tokens come from, and its credential only as set
or not; a profile without a provider shows no such lines (its screen stays as it was)."""

from __future__ import annotations

from dataclasses import replace

from mbxtui.tui.screens.profiles import NEW_PROFILE, settings_lines


def test_the_profile_detail_shows_the_oauth_provider_and_whether_its_credential_is_set():
    assert not [line for line in settings_lines(NEW_PROFILE) if "OAuth2 provider" in line]
    oauth = {"provider": "microsoft365", "tenant": "contoso.onmicrosoft.com", "client_id": "6731de76",
             "issuer": None, "scope": "https://outlook.office365.com/.default", "credential": "certificate set"}
    lines = settings_lines(replace(NEW_PROFILE, oauth=oauth))
    assert [line.split("  ", 1)[1].strip() for line in lines if line.startswith("OAuth2 provider")] == [
        "microsoft365, tenant contoso.onmicrosoft.com, client 6731de76"]
    assert any(line.startswith("OAuth client credential") and line.endswith("certificate set") for line in lines)
