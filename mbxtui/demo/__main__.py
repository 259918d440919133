"""``python -m mbxtui.demo [--reset] [--servers-only]``: the demo without the ``mbxtui`` command."""

from __future__ import annotations

import argparse

from mbxtui.demo import main_servers_only, run_demo


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m mbxtui.demo", description=__doc__)
    parser.add_argument("--reset", action="store_true", help="start over with a new demo database")
    parser.add_argument("--servers-only", action="store_true",
                        help="run the sandbox mail servers on the demo database without the console")
    args = parser.parse_args()
    if args.servers_only:
        return main_servers_only(reset=args.reset)
    return run_demo(reset=args.reset)


if __name__ == "__main__":
    raise SystemExit(main())
