"""Who the client is for the token rate limit (``voice_channel.elevenlabs.ratelimit``): one client, one bucket."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from voice_channel.elevenlabs.ratelimit import bucket_key, client_address


def behind_proxy(forwarded_for: str) -> str:
    request = make_mocked_request("GET", "/api/token", headers={"X-Forwarded-For": forwarded_for})
    return bucket_key(client_address(request, 1))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        # A proxy that appends the client's port (Azure Application Gateway does): every new connection
        # of the same client was a new, full bucket.
        ("203.0.113.7:50123", "203.0.113.7:50124"),
        ("[2001:db8::7]:50123", "[2001:db8::7]:50124"),
        # The same IPv4 client seen through a dual-stack socket.
        ("::ffff:203.0.113.7", "203.0.113.7"),
        # The same address written two ways.
        ("2001:DB8:0:0::7", "2001:db8::7"),
        # One IPv6 host holds a whole /64 (privacy addresses rotate in it): a new address was a new bucket.
        ("2001:db8:1:2::1", "2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
    ],
)
def test_one_client_has_one_bucket_however_its_address_is_written(one, other):
    assert behind_proxy(one) == behind_proxy(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("203.0.113.7", "203.0.113.8"),
        ("2001:db8:1:2::1", "2001:db8:1:3::1"),
        ("203.0.113.7", "::203.0.113.7"),
    ],
)
def test_different_clients_keep_their_own_buckets(one, other):
    assert behind_proxy(one) != behind_proxy(other)


def test_an_entry_that_is_no_address_is_kept_as_written():
    assert behind_proxy("unknown") == "unknown"
