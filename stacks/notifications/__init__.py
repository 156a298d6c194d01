"""Notifications out: machine `notify:` rules → deliveries recorded in the database → an RQ job per
delivery that calls the target (a signed JSON webhook, or a chat/e-mail service through apprise).

- `models`: NotificationTarget (configured in the admin) and NotificationDelivery (every attempt's answer).
- `rules`: which rules an applied event triggers; creates the deliveries inside the event's transaction.
- `targets`: sending one delivery to one target (signature, apprise).
- `jobs`: the RQ job body with retries and backoff, and enqueueing after commit.
"""
