"""The interfaces a later mode swaps (service.core.store.Store, service.core.bus.Bus): the implementations here
have every operation with the interface's signature, and SQLite's alert ids are never given twice."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from service.core.bus import Bus, LocalBus
from service.core.store import ALERT_ID_BLOCK, SqliteStore, Store


def operations(protocol: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(protocol).items()
        if callable(member) and not name.startswith("_")
    }


@pytest.mark.parametrize(("protocol", "implementation"), [(Store, SqliteStore), (Bus, LocalBus)])
def test_implementation_has_every_operation_with_its_signature(protocol: type, implementation: type) -> None:
    wanted = operations(protocol)
    assert len(wanted) >= 7
    for name, signature in wanted.items():
        assert str(inspect.signature(getattr(implementation, name))) == str(signature), name


def test_sqlite_store_and_local_bus_are_the_interfaces(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    assert isinstance(store, Store) and isinstance(LocalBus(4), Bus)
    store.close()


def test_alert_ids_are_never_given_twice_not_even_after_a_crash(tmp_path: Path) -> None:
    """Ids are reserved before their row is written (the writer stores it later): one published but never stored
    (a crash in between) must not name another alert after a restart; a stored row keeps its id."""
    path = tmp_path / "db.sqlite3"
    store = SqliteStore(path)
    first = store.reserve_alert_id()
    store.open_alert(first, "s", "m", 1.0, 0, 0.9, 0)
    lost = store.reserve_alert_id()  # published, never stored: the process dies here
    assert (first, lost) == (1, 2) and store.alert(first)["id"] == first and store.alert(lost) is None
    store.close()
    again = SqliteStore(path)
    fresh = [again.reserve_alert_id() for _ in range(ALERT_ID_BLOCK + 2)]
    assert fresh[0] > lost and len(set(fresh)) == len(fresh) and fresh == sorted(fresh)
    again.open_alert(fresh[-1], "s", "m", 2.0, 5, 0.8, 5)
    again.delete_alerts(stream_id="s")  # deleting rows never frees their ids
    again.close()
    third = SqliteStore(path)
    assert third.reserve_alert_id() > fresh[-1]
    third.close()
