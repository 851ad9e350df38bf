"""Cassandra URLs, replication and consistency settings: parsed here, with errors that show the right form."""

from __future__ import annotations

import pytest

from lambdarec.store import cassandra_schema as schema


def test_hosts_port_keyspace_dc_and_credentials() -> None:
    url = schema.parse_url("cassandra://h1,h2:9142/recs?dc=eu-west")
    assert (url.hosts, url.port, url.keyspace, url.dc) == (("h1", "h2"), 9142, "recs", "eu-west")
    assert url.where == "h1,h2:9142"
    url = schema.parse_url("cassandra://ops:p%40ss@db:9042/recs")
    assert (url.username, url.password, url.dc, url.hosts) == ("ops", "p@ss", None, ("db",))
    assert schema.parse_url("cassandra://db/recs").port == 9042


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("cassandra:///recs", "names no host"),
        ("cassandra://h1:9042,h2:9043/recs", "same port"),
        ("cassandra://h1:x/recs", "not a number"),
        ("cassandra://h1:9042/", "keyspace ''"),
        ("cassandra://h1:9042/1bad", "keyspace '1bad'"),
        ("sqlite:///x", "not a cassandra"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as err:
        schema.parse_url(url)
    assert "cassandra://host1,host2:9042/keyspace" in str(err.value)


def test_replication() -> None:
    assert "SimpleStrategy" in schema.replication_cql({"replication_factor": 3})
    nts = schema.replication_cql({"dc2": 2, "dc1": 3})
    assert nts == "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
    with pytest.raises(ValueError, match=r"store\.cassandra\.replication"):
        schema.replication_cql({"replication_factor": 1, "dc1": 3})
    with pytest.raises(ValueError, match="datacenter names"):  # a name is spliced into DDL: no quotes allowed
        schema.replication_cql({"dc1': 3, 'x": 1})


def test_consistency_names_the_setting() -> None:
    assert schema.consistency("local_quorum", "write_consistency") == 6
    with pytest.raises(ValueError, match=r"store\.cassandra\.read_consistency 'MOSTLY'"):
        schema.consistency("MOSTLY", "read_consistency")


def test_buckets_are_stable_across_processes() -> None:
    assert schema.trending_bucket("item-42") == schema.trending_bucket("item-42") < schema.TRENDING_BUCKETS
    assert {schema.item_bucket(i) for i in range(1000)} == set(range(schema.ITEM_BUCKETS))
    assert schema.describe(schema.INSERT_USER) == "INSERT user_rows"
