"""An API node's view of a camera (service.cluster.api.ClusterStream) while its models are still loading: the
stream list answers (no model, no database read needed for it), and an upload scored as the camera says which
model is missing."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.cluster


class NoStore:
    """Stands in for PostgreSQL: the describe path must not need it while no model is loaded."""

    def __getattr__(self, name: str):
        raise AssertionError(f"store.{name} called")


def test_a_camera_is_described_before_its_model_is_loaded() -> None:
    from service.alerts.views import LiveView
    from service.cluster.api import ClusterStream
    from service.core.exceptions import UnknownModel
    from service.core.settings import Settings

    row = {"id": "cam", "name": "gate", "url": "rtsp://10.0.0.5/s", "model": "ped2", "fps_cap": None, "alerts": {}}
    stream = ClusterStream(row, {}, LiveView(), [], NoStore(), None, Settings(_env_file=None))  # type: ignore[arg-type]
    out = stream.describe()
    assert out["calibration"] == "model" and out["state"] == "connecting" and out["alert"]["on"] == 1.0
    with pytest.raises(UnknownModel, match="ped2"):
        stream.scoring()
