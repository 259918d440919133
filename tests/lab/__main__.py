"""Start a mail lab, print how to reach it as JSON, and run until interrupted.

    python -m tests.lab [--workdir DIR] [--users N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from . import LabError, start_lab


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path,
                        help="where configuration, certificates and logs go "
                             "(default: a temporary directory removed on exit)")
    parser.add_argument("--users", type=int, default=0, metavar="N",
                        help="add N more users user0001@example.test... (password pw-<login>)")
    arguments = parser.parse_args()

    workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="mbxtui-lab-work-"))
    # SIGTERM ends the lab as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        lab = start_lab(workdir)
    except LabError as error:
        print(error, file=sys.stderr)
        return 1
    try:
        if arguments.users:
            lab.add_users(arguments.users)
        print(json.dumps({
            "host": lab.host,
            "ports": lab.ports,
            "ca_file": lab.ca_file,
            "wrong_ca_file": lab.wrong_ca_file,
            "users": lab.users,
            "disabled_user": lab.disabled_user,
            "master_login": lab.master_login,
            "master_password": lab.master_password,
            "workdir": str(lab.workdir),
            "spool_dir": str(lab.spool_dir),
            "start_seconds": round(lab.start_seconds, 3),
        }, indent=2, ensure_ascii=False), flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        lab.stop()
        if arguments.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
