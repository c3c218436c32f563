"""``manage.py run_gateway_sim``: flags, logging, and a clean stop on SIGTERM."""

from __future__ import annotations

import signal
import subprocess

from tests.fixtures.simulator import (
    REPO_ROOT,
    GatewaySim,
    gateway_sim_args,
    new_instance_key,
    python_executable,
    recv_close,
    recv_until,
)


@gateway_sim_args("--start-paired")
async def test_sigterm_closes_live_sessions_with_1001_and_exits_cleanly(gateway_sim: GatewaySim) -> None:
    key = new_instance_key()
    async with gateway_sim.connect(key) as ws:
        await recv_until(ws, "ready")
        gateway_sim.process.send_signal(signal.SIGTERM)
        closed = await recv_close(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1001
    assert gateway_sim.process.wait(10) == 0
    log = gateway_sim.log()
    assert f"OPEN instance={key}" in log
    assert f"CLOSE instance={key}" in log
    assert "gateway simulator stopped" in log


def test_an_invalid_flag_value_stops_start_up_with_a_message() -> None:
    result = subprocess.run(
        [python_executable(), "manage.py", "run_gateway_sim", "--port", "0", "--qr-ttl", "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "qr_ttl must be a positive number" in result.stderr


def test_a_taken_port_stops_start_up_with_a_message(gateway_sim: GatewaySim) -> None:
    result = subprocess.run(
        [python_executable(), "manage.py", "run_gateway_sim", "--port", str(gateway_sim.port)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"cannot serve on 127.0.0.1:{gateway_sim.port}" in result.stderr
