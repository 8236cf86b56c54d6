"""The README's from-scratch char-RNN as a model file for the command line.

    shapeviz trace gallery/models/char_rnn.py:build --input "bs=2,T=5,vocab=28" --ops
    shapeviz check gallery/models/char_rnn.py:build --input "bs=2,T=5,vocab=28"

`build()` takes no arguments and returns the model; the CLI makes token ids (bs, T) from --input.
"""

import torch
import torch.nn as nn


class CharRNN(nn.Module):
    """One-hot tokens (bs, T) -> a loop over T -> logits (T*bs, vocab) and the state H (bs, h)."""

    def __init__(self, vocab: int = 28, hidden: int = 64) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.vocab = vocab
        self.W_xh = nn.Parameter(torch.randn(vocab, hidden, generator=g) * 0.01)   # (vocab, h)
        self.W_hh = nn.Parameter(torch.randn(hidden, hidden, generator=g) * 0.01)  # (h, h)
        self.W_hq = nn.Parameter(torch.randn(hidden, vocab, generator=g) * 0.01)   # (h, vocab)

    def forward(self, tokens: torch.Tensor, H: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if H is None:
            H = torch.zeros(tokens.shape[0], self.W_hh.shape[0], device=tokens.device)  # (bs, h)
        outputs = []
        for X in nn.functional.one_hot(tokens.T, self.vocab).float():  # X: (bs, vocab)
            H = torch.tanh(X @ self.W_xh + H @ self.W_hh)  # (bs, h)
            outputs.append(H @ self.W_hq)  # logits (bs, vocab)
        return torch.cat(outputs, dim=0), H  # (T*bs, vocab), (bs, h)


def build() -> CharRNN:
    return CharRNN()
