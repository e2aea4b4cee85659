"""`mnad-cluster node`'s pure parts: reading its `ray start` options, and finding the shards that run under it.
The SIGTERM drain itself runs in the scenario (test_scenario.py, step 6)."""

from __future__ import annotations

import os
import subprocess
import sys

from service.cluster.node import descendants, local_shards, option


def test_option_reads_both_spellings_and_none() -> None:
    args = ["--address", "10.0.0.1:6379", "--num-cpus=2", "--disable-usage-stats"]
    assert option(args, "--address") == "10.0.0.1:6379"
    assert option(args, "--num-cpus") == "2"
    assert option(args, "--port") is None
    assert option(["--address"], "--address") is None  # no value after it


def test_local_shards_need_both_a_pid_under_the_node_and_the_node() -> None:
    status = {
        "shard-a": {"pid": 100, "node": "n1"},
        "shard-b": {"pid": 200, "node": "n1"},
        "shard-c": {"pid": 100, "node": "n2"},  # the same pid on another machine is not ours
    }
    assert local_shards(status, {100, 300}, {"n1"}) == ["shard-a"]
    assert local_shards(status, set(), {"n1"}) == []


def test_descendants_finds_grandchildren() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; time.sleep(30)'])",
        ]
    )
    try:
        found: list[int] = []
        for _ in range(100):
            found = descendants(os.getpid())
            if len(descendants(child.pid)) == 1:
                break
            subprocess.run(["sleep", "0.05"])
        grandchildren = descendants(child.pid)
        assert child.pid in found and len(grandchildren) == 1 and grandchildren[0] in found
    finally:
        for pid in descendants(child.pid):
            os.kill(pid, 9)
        child.kill()
        child.wait()
