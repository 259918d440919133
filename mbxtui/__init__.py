"""mbxtui: a keyboard-first console for server-side email synchronization mailboxes."""

__version__ = "0.1.0"
