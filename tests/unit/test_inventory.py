import json

import pytest

from heartbeat.inventory import (
    InventoryError,
    PathNode,
    ServerSpec,
    Shard,
    bastion_options,
    bastion_path,
    check_bastions,
    read_import_file,
    shard_label,
    shard_servers,
    validate_import,
    validate_server,
)
from heartbeat.models import Server

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("row", "expected"), [
    ({"name": "web-01", "host": "web01.example.com"}, ServerSpec("web-01", "web01.example.com")),
    ({"name": "db", "host": "192.0.2.10", "port": "2222", "username": "ops", "conn_id": "fleet_a",
      "enabled": "no"}, ServerSpec("db", "192.0.2.10", 2222, "ops", "fleet_a", False)),
    ({"name": "v6", "host": "[2001:db8::1]", "port": 22}, ServerSpec("v6", "2001:db8::1")),
], ids=["dns name", "all fields", "ipv6 in brackets"])
def test_should_accept_valid_rows(row, expected):
    assert validate_server(row) == expected


@pytest.mark.parametrize(("row", "problem"), [
    ({"name": "a", "host": "h", "port": 0}, "port must be between 1 and 65535, got 0"),
    ({"name": "a", "host": "h", "port": 70000}, "port must be between 1 and 65535, got 70000"),
    ({"name": "a", "host": "h", "port": "ssh"}, "is not a number"),
    ({"name": "a", "host": ""}, "host is empty"),
    ({"name": "a", "host": "bad host name"}, "is not a DNS name"),
    ({"name": "a", "host": "h\x00x"}, "NUL byte"),
    ({"name": "'; DROP TABLE servers; --", "host": "h"}, "name"),
    ({"name": "a" * 10_000, "host": "h"}, "name"),
    ({"name": "а", "host": "h"}, "name"),  # Cyrillic look-alike
    ({"name": "a", "host": "h", "host_key": "ssh-ed25519 nope"}, "host_key is malformed"),
    ({"name": "a", "host": "h", "colour": "red"}, "unknown field(s) colour"),
    ({"name": "a", "host": "h", "enabled": "maybe"}, "enabled"),
], ids=["port 0", "port 70000", "port text", "empty host", "space in host", "nul", "sql injection",
        "10 KB name", "look-alike", "bad host key", "unknown field", "bad bool"])
def test_should_reject_bad_rows_naming_the_field(row, problem):
    with pytest.raises(InventoryError) as err:
        validate_server(row)
    assert problem in str(err.value)


def test_should_report_every_bad_line_of_an_import_and_import_nothing():
    content = "name,host,port\nweb-01,10.0.0.1,22\nweb-02,,22\nweb-03,10.0.0.3,99999\nweb-01,10.0.0.4,22\n"
    with pytest.raises(InventoryError) as err:
        validate_import(read_import_file(content, "csv"))
    assert err.value.problems == [
        "line 3: host is empty",
        "line 4: port must be between 1 and 65535, got 99999",
        "line 5: name 'web-01' already appears on line 2",
    ]


def test_should_read_yaml_with_line_numbers():
    content = "servers:\n  - name: a\n    host: 10.0.0.1\n  - name: b\n    host: 10.0.0.2\n    port: 0\n"
    rows = read_import_file(content, "yaml")
    assert [line for line, _ in rows] == [2, 4]
    with pytest.raises(InventoryError, match="line 4: port must be between"):
        validate_import(rows)


def servers(n: int) -> list[Server]:
    return [Server(id=i, name=f"s{i}", host=f"10.0.0.{i % 250}") for i in range(n)]


@pytest.mark.parametrize(("n", "size", "max_shards", "expected_sizes"), [
    (0, 50, 256, []),
    (10, 50, 256, [10]),
    (120, 50, 256, [40, 40, 40]),
    (3, 1, 256, [1, 1, 1]),
    (3000, 1, 100, [30] * 100),
], ids=["empty", "one shard", "balanced", "one per server", "capped shard count"])
def test_should_cut_balanced_shards_within_limits(n, size, max_shards, expected_sizes):
    shards = shard_servers(servers(n), size, max_shards)
    assert [len(s) for s in shards] == expected_sizes
    assert [s.id for shard in shards for s in shard] == list(range(n))


def test_should_label_shards_by_their_servers():
    def server(name: str, host: str) -> Server:
        return Server(id=1, name=name, host=host)

    assert shard_label([server("web-01", "10.0.0.1")]) == "web-01 (10.0.0.1)"
    assert shard_label([server("a", "x"), server("b", "y")]) == "a … b (2 servers)"


def test_should_pass_a_shard_through_json_as_ids_and_a_label():
    shard = Shard.of(servers(1000))
    data = shard.to_json()
    assert set(data) == {"label", "server_ids", "site"} and data["server_ids"] == list(range(1000))
    assert data["site"] == "default"
    assert Shard.from_json(data) == shard
    assert len(json.dumps(data)) < 6 * 1000  # the XCom stays a few kB, whatever the rows hold




def nodes(*rows: tuple[str, str | None, bool]) -> dict[str, PathNode]:
    return {name: PathNode(name, via, enabled) for name, via, enabled in rows}


@pytest.mark.parametrize(("inventory", "problems"), [
    (nodes(("b", None, True), ("a", "b", True)), []),
    (nodes(("b1", None, True), ("b2", "b1", True), ("b3", "b2", True), ("a", "b3", True)), []),
    (nodes(("a", "nowhere", True)), ["a: via names 'nowhere', which is not in the inventory"]),
    (nodes(("b", None, False), ("a", "b", True)),
     ["a: via names 'b', which is disabled: enable it or reach 'a' another way"]),
    (nodes(("a", "b", True), ("b", "a", True)),
     ["a: via makes a cycle: a -> b -> a", "b: via makes a cycle: b -> a -> b"]),
    (nodes(("b1", None, True), ("b2", "b1", True), ("b3", "b2", True), ("b4", "b3", True), ("a", "b4", True)),
     ["a: via chain has more than 3 hops: a -> b4 -> b3 -> b2 -> b1"]),
    (nodes(("b", None, False), ("a", "b", False)), []),
], ids=["one hop", "three hops", "unknown", "disabled bastion", "cycle", "four hops", "disabled server unchecked"])
def test_should_refuse_bastion_paths_that_cannot_work_naming_the_servers(inventory, problems):
    assert check_bastions(inventory) == problems


def test_should_list_the_bastions_of_a_chain_the_directly_reached_one_first():
    inventory = nodes(("b1", None, True), ("b2", "b1", True), ("a", "b2", True))
    assert bastion_path("a", inventory) == (["b1", "b2"], None)


def test_should_refuse_a_server_that_is_its_own_bastion():
    with pytest.raises(InventoryError, match="a server cannot be its own bastion"):
        validate_server({"name": "a", "host": "10.0.0.1", "via": "a"})


def test_should_give_a_bastion_forwarding_to_its_servers_only_and_no_command():
    assert bastion_options([("10.0.0.2", 22), ("2001:db8::1", 2222), ("10.0.0.2", 22)], "192.0.2.0/24") == (
        'restrict,port-forwarding,permitopen="10.0.0.2:22",permitopen="[2001:db8::1]:2222",'
        'command="/bin/false",from="192.0.2.0/24"')
