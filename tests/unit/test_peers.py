"""The member-stage steps the benchmark's peers share with its baseline (signupflow.peers), and
how a missing peer package is reported."""

from __future__ import annotations

from signupflow.bench import make_events
from signupflow.domain.decode import decode_partner_created
from signupflow.peers import Dead, missing_peers, partner_messages, partner_value, split


def test_split_keeps_valid_profiles_and_names_why_the_others_are_dead() -> None:
    (key, value, _), = make_events(1)
    profiles, dead = split([(key, value), (b"other-key", value), (key, b"not json")])
    assert [p.uuid.encode() for p in profiles] == [key]
    assert [d.value for d in dead] == [value, b"not json"]
    assert "does not match" in dead[0].reason
    assert dead[1].headers == [("dlq.error", dead[1].reason.encode())]


def test_partners_and_only_partners_are_published_keyed_by_their_uuid() -> None:
    events = make_events(40, partner_ratio=0.5, seed=3)
    profiles, _ = split((k, v) for k, v, _ in events)
    messages = partner_messages(profiles)
    assert [k for k, _ in messages] == [k for k, _, partner in events if partner]
    for key, value in messages:
        assert decode_partner_created(key, value, 4096).partner_id == key.decode()
    values = [partner_value(p) for p in profiles]
    assert [v for v in values if v is not None] == [v for _, v in messages]
    assert partner_value(Dead(None, None, "empty")) is None


def test_a_peer_whose_package_is_missing_is_named_with_how_to_install_it() -> None:
    missing = missing_peers(lambda package: None if package == "quixstreams" else object())
    assert list(missing) == ["quix"]
    assert "quixstreams is not installed" in missing["quix"]
    assert "'.[bench]'" in missing["quix"]
    assert missing_peers(lambda _: object()) == {}
