"""Test & Enable jobs, queued in the database and run in the background (R8, R14-R16, R21).

- ``queue``: enqueue, claim, renew, give back and recover jobs; what a batch came to. Imports no
  service, so the services may enqueue.
- ``runner``: the pool of threads that checks claimed mailboxes within each profile's connection
  bound and writes the results. Uses the services; no service imports it.
- ``outcome``: ``decide``, what one attempt leads to (R14-R16), without the database.
- ``failing_profiles``: R16, for Test & Enable and processing alike: which mailboxes are failing,
  and the one alert an hour to a failing profile's owner.
- ``leases``: each profile's connection slots, shared by every runner of every worker process.

Nothing is imported here, so that importing ``queue`` does not load the runner.
"""
