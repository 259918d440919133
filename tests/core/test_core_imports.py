"""mbxtui.core is the product without a screen: importing all of it must not load textual or rich."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import importlib, json, pkgutil, sys
import mbxtui.core
names = sorted(m.name for m in pkgutil.walk_packages(mbxtui.core.__path__, "mbxtui.core."))
for name in names:
    importlib.import_module(name)
screen_modules = sorted(n for n in sys.modules if n.split(".")[0] in ("textual", "rich"))
print(json.dumps({"imported": names, "screen_modules": screen_modules}))
"""


def test_importing_every_core_module_loads_neither_textual_nor_rich():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"mbxtui.core.db", "mbxtui.core.services.mailboxes", "mbxtui.core.secrets"} <= set(report["imported"])
    assert report["screen_modules"] == []
