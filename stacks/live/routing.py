from django.urls import re_path

from stacks.live.consumers import StackConsumer, StacksConsumer

websocket_urlpatterns = [
    re_path(r"^ws/stacks/$", StacksConsumer.as_asgi()),
    re_path(r"^ws/stacks/(?P<stack_id>[A-Za-z0-9][A-Za-z0-9._-]{0,62})/$", StackConsumer.as_asgi()),
]
