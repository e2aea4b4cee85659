from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import HostDep
from service.api.schemas import ModelsOut

router = APIRouter(prefix="/api/models", tags=["models"])


@router.get("", response_model=ModelsOut)
def list_models(host: HostDep) -> dict:
    return {"default": host.default, "models": [m.describe() for m in host.list()], "errors": host.errors}
