"""One rank of the 2-process DDP test (started by tests/test_distributed.py, not collected)."""

from __future__ import annotations

import datetime
import os
import sys

import torch
import torch.distributed as dist
import torch.nn as nn

import shapeviz as sv


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out[-1])


def main() -> int:
    rank = int(os.environ["RANK"])
    bad_rank = int(os.environ.get("BAD_RANK", "-1"))
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=20))
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(Model())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    try:
        with sv.checking():
            for step in range(4):
                emb = 9 if (rank == bad_rank and step == 2) else 8
                x = torch.randn(5, 3, emb)
                loss = model(x).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                print(f"rank {rank} step {step} loss {loss.item():.4f}", flush=True)
    except sv.ShapeError as e:
        print(f"SHAPEERROR {e}", flush=True)
        return 3
    dist.barrier()  # both ranks done: neither is left waiting on the other
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # skip interpreter/process-group teardown, which can hang on a closed peer
