"""Two gloo processes train a DDP-wrapped LSTM with checking on; a shape error names its rank."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("dist_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(bad_rank: int, timeout: float = 90.0) -> list[tuple[int, str]]:
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2",
               BAD_RANK=str(bad_rank), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen([sys.executable, str(WORKER)], env=dict(env, RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    try:
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
        return [(p.returncode, out) for p, out in zip(procs, outs)]
    finally:
        for p in procs:  # bounded: never leave a rank behind
            if p.poll() is None:
                p.kill()
                p.wait()


def test_ddp_trains_clean_with_checking():
    results = _run(bad_rank=-1)
    for rank, (code, out) in enumerate(results):
        assert code == 0, out
        assert f"rank {rank} step 3 loss" in out


def test_shape_error_on_one_rank_names_the_rank():
    (code0, out0), (code1, out1) = _run(bad_rank=1)
    assert code1 == 3, out1
    assert "[input_size]" in out1 and "rank 1 of 2 (torch.distributed)" in out1
    assert "rank 1 step 1 loss" in out1 and "rank 1 step 2" not in out1
    # the healthy rank is left waiting in the gradient all-reduce of step 2; when rank 1's process
    # exits, gloo closes the connection and rank 0 fails with a RuntimeError (within the timeout)
    assert code0 not in (0, None), out0
    assert "rank 0 step 1 loss" in out0 and "rank 0 step 2" not in out0


if not hasattr(socket, "AF_INET"):  # pragma: no cover
    pytest.skip("no sockets", allow_module_level=True)
