"""The three locking modes and the request body each one produces (no network needed)."""

import json

from gemini_tokens._converters import body_for
from gemini_tokens._request import build_request

constraints = {
    "model": "gemini-2.5-flash-native-audio-preview-12-2025",
    "config": {"response_modalities": ["AUDIO"], "temperature": 0.7},
}

for lock in (None, [], ["top_p"]):
    request = build_request(live_connect_constraints=constraints, lock_additional_fields=lock)
    body = body_for(request)
    del body["expireTime"], body["newSessionExpireTime"]  # they change with the clock
    print(f"lock_additional_fields={lock!r}")
    print(json.dumps(body, sort_keys=True))
