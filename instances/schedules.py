"""The recovery jobs beat runs (their schedules are created by migration
0002 and can be tuned in the admin)."""

RECOVERY_JOBS = [
    ("Dispatch due retries", "instances.dispatch_due_retries"),
    ("Advance breakers after cooldown", "instances.advance_breakers"),
    ("Recover sessions lost with their worker", "instances.recover_lost_sessions"),
    ("Clean stale connecting markers", "instances.clean_stale_connecting"),
    ("Dispatch due messages", "instances.dispatch_due_messages"),
]
