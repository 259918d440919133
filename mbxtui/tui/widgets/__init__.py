"""Reusable pieces of the console: the mailbox grid, the confirmation dialog."""
