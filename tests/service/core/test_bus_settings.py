"""Unit tests: WebSocket fan-out queues and the settings object."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import ValidationError
from pydantic_settings import CliApp

from service.api.schemas import StreamCreate
from service.core.bus import LocalBus
from service.core.messages import Dropped
from service.core.settings import Settings


def test_slow_subscriber_loses_oldest_is_told_and_does_not_affect_others() -> None:
    async def scenario() -> None:
        drops = []
        hub = LocalBus(queue_size=4, on_drop=lambda topic, n: drops.append(n))
        fast, slow = hub.subscribe("s"), hub.subscribe("s")
        received = []
        for i in range(20):
            hub.publish("s", Dropped(topic="t", dropped=i, total_dropped=i))  # any message
            received += [json.loads(t) for t, _ in await hub.next(fast)]  # fast keeps up
        assert [m["dropped"] for m in received] == list(range(20))
        assert slow.dropped == 16 and sum(drops) == 16
        first = [json.loads(t) for t, _ in await hub.next(slow)]
        assert first[0] == {"type": "dropped", "topic": "s", "dropped": 16, "total_dropped": 16}
        rest = [first[1]] + [json.loads((await hub.next(slow))[0][0]) for _ in range(3)]
        assert [m["dropped"] for m in rest] == [16, 17, 18, 19]
        assert [m["seq"] for m in rest] == [16, 17, 18, 19]  # gap in seq == the dropped count
        hub.unsubscribe(slow)
        hub.unsubscribe(fast)
        assert hub.subscribers() == 0

    asyncio.run(scenario())


def test_settings_defaults_env_and_flags(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    s = Settings()
    assert s.host == "127.0.0.1" and str(s.models_dir) == "weights" and s.api_token is None
    monkeypatch.setenv("MNAD_MAX_BATCH", "7")
    monkeypatch.setenv("MNAD_API_TOKEN", "tok-4711")
    s = Settings()
    assert s.max_batch == 7 and s.api_token.get_secret_value() == "tok-4711" and "tok-4711" not in repr(s)
    s = CliApp.run(Settings, cli_args=["--max-batch", "3", "--stream", "a.mkv", "--stream", "rtsp://h/x"])
    assert s.max_batch == 3 and s.stream == ["a.mkv", "rtsp://h/x"]  # flags beat the environment


def test_settings_env_file(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("MNAD_PORT=9123\n")
    assert Settings().port == 9123


@pytest.mark.parametrize(
    "kwargs",
    [{"port": 70000}, {"max_batch": 0}, {"frame_buffer": 0}, {"alert_on": 0.3, "alert_off": 0.5},
     {"device": "tpu"}, {"bogus": 1}, {"reconnect_initial_s": 10, "reconnect_max_s": 1}],
)  # fmt: skip
def test_settings_reject_out_of_bounds(kwargs, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError):
        Settings(**kwargs)


def test_every_setting_is_documented() -> None:
    assert all(f.description for f in Settings.model_fields.values())


def test_alert_thresholds_are_checked_by_one_rule_in_settings_and_stream_bodies() -> None:
    message = r"alert_off \(0\.6\) must not exceed alert_on \(0\.5\)"
    with pytest.raises(ValidationError, match=message):
        Settings(_env_file=None, alert_on=0.5, alert_off=0.6)
    with pytest.raises(ValidationError, match=message):
        StreamCreate(url="rtsp://cam.local/s", name="gate", alert_on=0.5, alert_off=0.6)
    assert StreamCreate(url="rtsp://cam.local/s", name="gate", alert_off=0.6).alert_off == 0.6  # `on` unset: fine
    assert Settings(_env_file=None, alert_on=0.5, alert_off=0.5).alert_off == 0.5
