"""Which idle connection the cap evicts (server/http/connection_shares.py), as exact tables."""

from __future__ import annotations

import random
import re

import pytest

from server.http.connection_shares import ConnectionShares


def test_the_largest_clients_oldest_connection_is_the_victim() -> None:
    shares: ConnectionShares[str] = ConnectionShares()
    for conn, client in [
        ("v1", "victim"),
        ("a1", "attacker"),
        ("a2", "attacker"),
        ("v2", "victim"),
        ("a3", "attacker"),
    ]:
        shares.add(conn, client)
    assert shares.victim() == "a1"
    shares.discard("a1")
    shares.discard("a2")  # attacker 1, victim 2: the victim's oldest now
    assert shares.victim() == "v1"
    for conn in ("v1", "v2", "a3"):
        shares.discard(conn)
    assert shares.victim() is None and len(shares) == 0


def test_a_connection_back_from_a_request_is_the_newest_again() -> None:
    shares: ConnectionShares[str] = ConnectionShares()
    shares.add("first", "c")
    shares.add("second", "c")
    shares.discard("first")  # it sent a request...
    shares.add("first", "c")  # ...and is idle again, after `second`
    assert shares.victim() == "second"


@pytest.mark.parametrize(
    ("client", "trusted", "key"),
    [
        (("10.0.0.5", 4000), [], "10.0.0.5"),
        (("10.0.0.5", 4000), ["10.0.0.5"], ("10.0.0.5", 4000)),
        (("10.0.0.5", 4000), ["10.0.0.0/8"], ("10.0.0.5", 4000)),
        (("192.168.1.1", 1), ["10.0.0.0/8"], "192.168.1.1"),
        (("::1", 9), ["::1"], ("::1", 9)),
        # Review of issue 23: on a dual-stack socket (`--host ::`) an IPv4 balancer connects as
        # `::ffff:10.0.0.5`, which no IPv4 network contains: the setting silently did nothing.
        (("::ffff:10.0.0.5", 4000), ["10.0.0.0/8"], ("::ffff:10.0.0.5", 4000)),
        (("::ffff:192.168.1.1", 1), ["10.0.0.0/8"], "::ffff:192.168.1.1"),
        (None, ["10.0.0.0/8"], None),
    ],
)
def test_trusted_proxies_are_not_shares(
    client: tuple[str, int] | None, trusted: list[str], key: object
) -> None:
    assert ConnectionShares(trusted).client_key(client) == key


def test_a_bad_proxy_entry_is_named() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.300'")):
        ConnectionShares(["10.0.0.300"])


def test_random_operations_keep_the_victim_right() -> None:
    # Against a plain recomputation: the most-held client, its oldest connection.
    rng = random.Random(23)
    shares: ConnectionShares[int] = ConnectionShares()
    model: dict[int, str] = {}  # conn -> client, in insertion order
    for step in range(5000):
        if model and rng.random() < 0.45:
            conn = rng.choice(list(model))
            del model[conn]
            shares.discard(conn)
        else:
            model[step] = client = f"c{rng.randrange(6)}"
            shares.add(step, client)
        victim = shares.victim()
        if not model:
            assert victim is None
            continue
        counts: dict[str, int] = {}
        for client in model.values():
            counts[client] = counts.get(client, 0) + 1
        assert victim is not None
        assert counts[model[victim]] == max(counts.values())
        assert victim == next(c for c in model if model[c] == model[victim])
