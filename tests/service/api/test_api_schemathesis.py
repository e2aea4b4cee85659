"""schemathesis against the live OpenAPI schema of a real `serve` (uvicorn on loopback, with a token and a
stream scoring a real video): every operation, generated valid and invalid requests. Fails on any 5xx,
on a response that does not match its schema, and on an invalid request that is accepted.

MNAD_SCHEMATHESIS_EXAMPLES (default 50, about 1,600 requests) sets the examples per operation; the run prints how many
requests were sent, and the last test checks there were at least 1,000."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from conftest import LOOPBACK_SOURCES, SERVE, free_port, quiet_env
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

pytestmark = pytest.mark.ped2

EXAMPLES = int(os.environ.get("MNAD_SCHEMATHESIS_EXAMPLES", "50"))
TOKEN = "schemathesis-token"
SENT: list[int] = []  # status of every request made, across the operations


@pytest.fixture(scope="module")
def live(models_dir: Path, h264_clip: Path, tmp_path_factory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    port = free_port()
    log = tmp / "serve.log"
    cmd = [SERVE, "--port", str(port), "--models-dir", str(models_dir), "--data-dir", str(tmp / "data"),
           "--threads", "1", "--device", "cpu", "--inference", "fp32", "--stream", str(h264_clip),
           "--source-networks", LOOPBACK_SOURCES, "--max-streams", "4", "--open-timeout-s", "1"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=quiet_env(MNAD_API_TOKEN=TOKEN),
                            cwd=tmp)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve not ready in 60 s"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        errors = [x for x in log.read_text().splitlines() if "Traceback" in x or "Exception in ASGI" in x]
        assert not errors, f"serve logged errors: {errors[:5]}"


@pytest.fixture(scope="module")
def api_schema(live: str):
    schema = schemathesis.openapi.from_url(f"{live}/openapi.json")
    schema.config.update(base_url=live, headers={"Authorization": f"Bearer {TOKEN}"})
    return schema


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation(api_schema, mode: GenerationMode) -> None:
    """Each operation gets EXAMPLES generated requests in this mode; every failure of every operation is
    collected and reported together (hypothesis shrinks each to its smallest example)."""
    failures: dict[str, str] = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
            derandomize=os.environ.get("CI") == "true",  # CI sends the same requests every run
        )  # fmt: skip
        def run(case) -> None:
            response = case.call(timeout=30)
            SENT.append(response.status_code)
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:  # negative mode: nothing in this operation can be made invalid (no bounded input)
            continue
        except Exception as e:  # a check failed (or many): keep going, report them all
            failures[operation.label] = str(e)[-3000:]
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())


def test_enough_requests_were_made() -> None:
    """The bar: at least 1,000 generated requests (the operations above ran first, in this module)."""
    print(f"schemathesis: {len(SENT)} requests, status counts {sorted({s: SENT.count(s) for s in SENT}.items())}")
    if EXAMPLES >= 50:
        assert len(SENT) >= 1000, len(SENT)
    assert not [s for s in SENT if s >= 500]
