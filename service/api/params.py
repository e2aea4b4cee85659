"""Query parameters that several routes take, declared once so their bounds and descriptions stay the same."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

Width = Annotated[int, Query(ge=16, le=4096)]  # of a rendered picture, in pixels
Overlay = Annotated[bool, Query(description="Blend the anomaly heatmap over the picture")]
