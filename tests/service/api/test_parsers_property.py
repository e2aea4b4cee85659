"""Property tests (hypothesis) for what parses caller- or operator-supplied text: settings, stream URLs
and the source policy, upload names, token and Origin headers. Each must either accept or refuse with
its own error type, never raise anything else (that would be a 500 or a crashed start)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import string
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from python_multipart.multipart import MultipartParser

from model.data import VIDEO_SUFFIXES
from service.api.auth import bearer, origin_ok, subprotocol_token, token_ok
from service.api.routers.clips import FilePart, NameTooLong, stored_suffix
from service.api.schemas import StreamCreate
from service.capture.sources import is_local_file, redact
from service.core.policy import SourcePolicy, SourceRefused, parse_network
from service.core.settings import Settings

# CI replays the same examples every run (a found case becomes a named test, as below); locally they vary
FAST = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=os.environ.get("CI") == "true",
)  # fmt: skip
NO_DNS = SourcePolicy.parse(["private", "public"], ["rtsp", "rtsps", "http", "https"], resolver=lambda h, p: [])
LOOPBACK_V4 = st.integers(0x7F000000, 0x7FFFFFFF).map(lambda n: str(ipaddress.IPv4Address(n)))
LINK_LOCAL_V4 = st.integers(0xA9FE0000, 0xA9FEFFFF).map(lambda n: str(ipaddress.IPv4Address(n)))
MULTICAST_V4 = st.integers(0xE0000000, 0xEFFFFFFF).map(lambda n: str(ipaddress.IPv4Address(n)))


@FAST
@given(st.text(max_size=60))
def test_network_entries_parse_or_say_why(entry: str) -> None:
    try:
        parsed = parse_network(entry)
    except ValueError as e:
        assert "neither" in str(e)
        return
    assert parsed in ("private", "public") or isinstance(parsed, ipaddress.IPv4Network | ipaddress.IPv6Network)


NUMERIC = [n for n, f in Settings.model_fields.items() if f.annotation in (int, float, float | None, int | None)]


@FAST
@given(st.sampled_from(NUMERIC), st.one_of(st.text(max_size=30), st.floats(allow_nan=True), st.integers()))
def test_settings_accept_or_raise_validation_errors(field: str, value) -> None:
    try:
        s = Settings(**{field: value}, _env_file=None)
    except ValidationError:
        return
    got = getattr(s, field)
    assert got is None or got == got, "a NaN got through a bounded setting"  # NaN != NaN


@FAST
@given(st.lists(st.text(max_size=20), max_size=4), st.lists(st.text(max_size=8), max_size=3))
def test_list_settings_accept_or_raise_validation_errors(networks: list[str], schemes: list[str]) -> None:
    try:
        s = Settings(source_networks=networks, source_schemes=schemes, _env_file=None)
    except ValidationError:
        return
    SourcePolicy.parse(s.source_networks, s.source_schemes)  # what the service builds from them


URL_TEXT = st.text(alphabet=string.printable + "ü[]@:%", max_size=80)
URLS = st.one_of(
    URL_TEXT,
    st.builds(lambda scheme, host, rest: f"{scheme}://{host}{rest}",
              st.sampled_from(["rtsp", "RTSP", "rtsps", "http", "https", "ftp", "file", ""]), URL_TEXT, URL_TEXT),
)  # fmt: skip


@FAST
@given(URLS)
def test_stream_urls_validate_or_refuse_never_crash(url: str) -> None:
    with contextlib.suppress(ValidationError):
        StreamCreate(url=url, name="x")
    assert isinstance(redact(url), str) and is_local_file(url) in (True, False)
    try:
        addresses = NO_DNS.check(url)
    except SourceRefused:
        return
    assert all(NO_DNS.address_allowed(a) for a in addresses)


@FAST
@given(st.one_of(LOOPBACK_V4, LINK_LOCAL_V4, MULTICAST_V4), st.sampled_from(["v4", "mapped", "name"]),
       st.sampled_from(["rtsp", "rtsps", "http", "https"]), st.integers(1, 65535),
       st.text(string.ascii_letters, max_size=10))  # fmt: skip
def test_internal_addresses_refused_in_every_spelling(
    address: str, form: str, scheme: str, port: int, path: str
) -> None:
    host = {"v4": address, "mapped": f"[::ffff:{address}]", "name": "camera.example"}[form]
    policy = SourcePolicy.parse(["private", "public"], [scheme], resolver=lambda h, p: ["10.0.0.1", address])
    with pytest.raises(SourceRefused):
        policy.check(f"{scheme}://user:pw@{host}:{port}/{path}")


@FAST
@given(st.ip_addresses(v=4, network="10.0.0.0/8") | st.ip_addresses(v=6, network="fd00::/8"),
       st.text(string.ascii_letters + string.digits, min_size=1, max_size=8), st.integers(1, 65535),
       st.text(string.ascii_letters + "/_-.", max_size=20))  # fmt: skip
def test_pinning_keeps_everything_but_the_host(address, user: str, port: int, path: str) -> None:
    policy = SourcePolicy.parse(["private"], ["rtsp"], resolver=lambda h, p: [str(address)])
    url = f"rtsp://{user}:secret@cam.example:{port}/{path}"
    pinned = urlsplit(policy.pin(url))
    original = urlsplit(url)
    assert (pinned.scheme, pinned.username, pinned.password, pinned.port, pinned.path) == (
        original.scheme, original.username, original.password, original.port, original.path)  # fmt: skip
    assert ipaddress.ip_address(pinned.hostname) == address


NAMES = st.text(max_size=400).map(lambda s: s.encode("utf-8", "surrogatepass")) | st.binary(max_size=400)


@FAST
@given(NAMES)
def test_upload_names_never_reach_the_file_system(tmp_path: Path, raw: bytes) -> None:
    """Whatever the filename parameter holds: the upload is stored under the generated path, with a known
    suffix, or refused as too long; the parser itself never fails on it."""
    assume(b'"' not in raw and b"\r" not in raw and b"\n" not in raw)
    path = tmp_path / "generated.upload"
    part = FilePart(path, limit=10_000, max_name=255)
    parser = MultipartParser(b"b", part.callbacks())
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + raw + b'"\r\n\r\nDATA\r\n--b--\r\n'
    try:
        parser.write(body)
        parser.finalize()
    except NameTooLong:
        assert len(raw.decode(errors="replace")) > 255
        return
    finally:
        part.close()
    assert part.found and part.size == 4 and path.read_bytes() == b"DATA"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["generated.upload"]
    suffix = stored_suffix(part.filename)
    assert suffix in VIDEO_SUFFIXES or suffix == ".video"
    path.unlink()


TOKENS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Zs", "Zl", "Zp"]), min_size=1)


@FAST
@given(TOKENS, st.sampled_from(["Bearer", "bearer", "BEARER", "BeArEr"]), st.text(max_size=40))
def test_token_headers(token: str, scheme: str, other: str) -> None:
    assert token_ok(token, f"{scheme} {token}")
    assert token_ok(token, f"  {scheme}   {token}  ")
    assert not token_ok(token, f"Basic {token}") and not token_ok(token, token) and not token_ok(token, None)
    assume(other.strip() != token)
    assert not token_ok(token, f"Bearer {other}")
    bearer(other)  # never raises


@FAST
@given(st.lists(st.text(max_size=60), max_size=4))
def test_subprotocol_tokens_never_crash(protocols: list[str]) -> None:
    subprotocol_token(protocols)
    subprotocol_token([f"mnad.token.{p}" for p in protocols])


@FAST
@given(st.one_of(st.none(), st.text(max_size=60)), st.one_of(st.none(), st.text(max_size=40)),
       st.lists(st.text(max_size=30), max_size=3))  # fmt: skip
def test_origin_checks_never_crash_and_deny_other_hosts(origin, host, allowed) -> None:
    result = origin_ok(origin, host, allowed)
    if origin is None:
        assert result
    if origin is None or not host:  # nothing more to compare (no filtering: hypothesis health checks fail on it)
        return
    if result and origin.strip().rstrip("/").lower() not in [a.strip().rstrip("/").lower() for a in allowed]:
        netloc = origin.strip().rstrip("/").lower().partition("://")[2]
        assert netloc.split(":")[0] == host.strip().lower().split(":")[0]


def test_redact_hides_a_url_whose_port_is_not_a_number() -> None:
    """Found by the property test above: urlsplit's .port raises on 'rtsp://u:p@h:A/'."""
    assert redact("rtsp://user:secret@cam:A/x") == "(unparsable URL)"
    assert redact("rtsp://user:secret@cam:554/x") == "rtsp://user:***@cam:554/x"
