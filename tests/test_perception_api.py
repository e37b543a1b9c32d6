"""`POST /v1/perception/parse`, in process (shapes only; streaming is tested live)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from tests.conftest import load_sample, make_settings


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(perception_max_field_chars=30))) as test_client:
        yield test_client


def test_accepts_a_messages_object_or_a_whole_request(client: TestClient) -> None:
    body = load_sample("raven0-documented")
    whole = client.post("/v1/perception/parse", json=body)
    only = client.post("/v1/perception/parse", json={"messages": body["messages"]})
    assert whole.status_code == only.status_code == 200
    assert whole.json() == only.json()
    data = whole.json()
    assert set(data) == {
        "mode",
        "latest",
        "observations",
        "messages",
        "issues",
        "instructions",
        "emotion_rule",
        "layout",
        "wrapped_rules",
    }
    assert data["mode"] == "raven"
    assert data["observations"][0]["message_index"] == 2


def test_field_cap_comes_from_settings(client: TestClient) -> None:
    body = {
        "messages": [{"role": "system", "content": f"<user_emotions>{'y' * 100}</user_emotions>"}]
    }
    data = client.post("/v1/perception/parse", json=body).json()
    assert len(data["latest"]["emotions"]) == 30
    assert data["issues"][0]["kind"] == "truncated_field"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("not json", "parse the JSON"),
        ("[]", "JSON object"),
        ("{}", "messages"),
        ('{"messages": {}}', "messages"),
    ],
)
def test_bad_bodies_are_openai_400s(client: TestClient, body: str, needle: str) -> None:
    response = client.post(
        "/v1/perception/parse", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]


def test_odd_messages_are_reported_not_rejected(client: TestClient) -> None:
    data = client.post(
        "/v1/perception/parse", json={"messages": [1, {"role": "user", "content": "hi"}]}
    ).json()
    assert data["issues"] == [
        {
            "message_index": 0,
            "kind": "invalid_message",
            "detail": "not an object with a string role; kept as is",
        }
    ]
    assert data["messages"] == [1, {"role": "user", "content": "hi"}]


def test_key_applies_to_parse() -> None:
    with TestClient(create_app(make_settings(api_key="s3cret"))) as keyed:
        assert keyed.post("/v1/perception/parse", json={"messages": []}).status_code == 401
        ok = keyed.post(
            "/v1/perception/parse",
            json={"messages": []},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert ok.status_code == 200
