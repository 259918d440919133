"""Server-side synchronization: processing the mailboxes Test & Enable enabled (R23-R33)."""
