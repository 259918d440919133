"""Who may run ``profile diagnose`` (its behaviour against real servers: tests/integration/test_oauth_diagnose.py)."""

from __future__ import annotations

import pytest

from mbxtui.core.diagnosis import diagnose_profile
from mbxtui.core.errors import PermissionDenied
from tests.core.conftest import Actors


def test_a_viewer_may_not_diagnose_a_profile(actors: Actors):
    with pytest.raises(PermissionDenied, match="vic is viewer"):
        diagnose_profile(actors.viewer, "any profile", None)  # type: ignore[arg-type]  # refused before the store is used
