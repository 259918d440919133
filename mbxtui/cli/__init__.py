"""The command line: every headless action a script needs, over the same services as the console.

    mbxtui [--db PATH] [--as LOGIN] [--log-file PATH] COMMAND ...

Exit status: 0 success, 1 refused or failed (one line on stderr), 2 usage error, 3 a test failed.

``main`` (in program.py) builds the parser from one module per command group, each holding its
subcommands' options beside their handlers; output.py prints (tables, records, JSON), options.py
holds the argparse pieces the groups share, context.py what a command runs with.
"""

from mbxtui.cli.program import build_parser, main

__all__ = ["build_parser", "main"]
