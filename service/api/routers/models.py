from __future__ import annotations

from fastapi import APIRouter, Depends

from service.api.deps import ready_runtime
from service.api.schemas import ModelsOut
from service.runtime import Runtime

router = APIRouter(prefix="/api/models", tags=["models"])


@router.get("", response_model=ModelsOut)
def list_models(rt: Runtime = Depends(ready_runtime)) -> dict:
    host = rt.host
    return {"default": host.default, "models": [m.describe() for m in host.list()], "errors": host.errors}
