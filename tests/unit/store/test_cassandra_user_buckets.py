"""How many partitions a Cassandra snapshot's user rows get, from the user count its writer announces."""

from __future__ import annotations

import pytest

from lambdarec.store import cassandra_users


@pytest.mark.parametrize(
    ("meta", "buckets"),
    [({}, 64), ({"counts": {"user_rows": 0}}, 1), ({"counts": {"user_rows": 4097}}, 3),
     ({"counts": {"user_rows": True}}, 64), ({"counts": "many"}, 64), ({"counts": {"user_rows": 10**12}}, 1 << 20)],
)  # fmt: skip
def test_the_partition_count_follows_the_announced_users(meta: dict, buckets: int) -> None:
    assert cassandra_users.bucket_count(meta, 2048) == buckets


def test_a_user_s_bucket_is_the_same_in_every_process_and_spreads_users_evenly() -> None:
    # crc32 of the id, not hash() (salted per process): writers and readers in other processes must agree
    assert (cassandra_users.user_bucket("u1", 64), cassandra_users.user_bucket("user-42", 1000)) == (54, 435)
    sizes = [0] * 8
    for i in range(8000):
        sizes[cassandra_users.user_bucket(f"user-{i}", 8)] += 1
    assert min(sizes) > 850 and max(sizes) < 1150
