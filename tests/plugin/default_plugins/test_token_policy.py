"""The built-in token policy (``voice_channel.default_plugins.token_policy``) under hostile headers."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from voice_channel.contract import TokenDenied
from voice_channel.default_plugins.token_policy import authorize


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://xn--a.com"},  # an A-label that is no valid Punycode
        {"Origin": "https://xn--.example.com"},
        {"Sec-Fetch-Site": "same-origin", "Host": "xn--"},
        {"Sec-Fetch-Site": "same-origin", "Host": "xn--a.com:8765"},
    ],
)
@pytest.mark.parametrize("allowed", [[], ["https://voice.example.com"]])
def test_a_host_that_is_no_valid_idna_name_is_refused_as_a_wrong_origin(make_settings, headers, allowed):
    # yarl decodes a URL's host lazily: a malformed xn-- label raised UnicodeError out of the policy (a
    # `hook_failed` traceback in the log for anyone's request, and a vague "forbidden" answer).
    settings = make_settings(token={"allow_anonymous": True, "allowed_origins": allowed})
    request = make_mocked_request("GET", "/api/token", headers=headers)
    denied = authorize(request, settings)
    assert isinstance(denied, TokenDenied) and denied.code == "origin_not_allowed", denied
