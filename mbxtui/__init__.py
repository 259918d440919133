"""mbxtui: a keyboard-first console for server-side email synchronization mailboxes."""

import logging

__version__ = "0.1.0"

# Without a log file (see mbxtui/logs.py) nothing is logged anywhere: in particular not on the
# terminal, where logging's last-resort handler would print warnings over the console's screen.
logging.getLogger(__name__).addHandler(logging.NullHandler())
