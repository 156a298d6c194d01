"""Signed webhooks in: `POST /hooks/<name>` from GitHub, GitLab or any sender that signs its JSON.

- `models`: InboundHook (configured in the admin) and HookDelivery (delivery ids, refused when replayed).
- `verify`: the signature checks, constant-time.
- `mapping`: a host's payload → a stack event message (pure).
- `views`: the endpoint; every mapped delivery goes through `stacks.services.handle_event`.
"""
