"""Forward plus backward time of ``scaled_dot_product_attention`` at a mini token model's training shapes, by mask and
dropout: what each attention candidate of the training-speed work costs on this machine.

    python benchmarks/attention_speed.py                 # batch 16, 4 heads, 600 positions, head size 64, 1 thread
    python benchmarks/attention_speed.py --threads 2 --length 300

Masks: a boolean prefix-LM mask with padded keys (what VALL-E's AR builds), the same as an additive float mask,
``is_causal`` (no padding, no text prefix), and none. Each with the attention dropout of 0.1 and without.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def masks(batch: int, length: int) -> dict:
    """Masks ``[B, 1, T, T]`` (True = may attend) of a batch whose keys are padded from 2/3 of ``length`` on."""
    g = torch.Generator().manual_seed(0)
    lens = torch.randint(2 * length // 3, length + 1, (batch,), generator=g)
    lens[0] = length
    keys = torch.arange(length)[None] < lens[:, None]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    boolean = (keys[:, None, None, :] & causal) | torch.eye(length, dtype=torch.bool)
    additive = torch.zeros(boolean.shape).masked_fill(~boolean, float("-inf"))
    return {"boolean mask": {"attn_mask": boolean}, "additive mask": {"attn_mask": additive},
            "is_causal": {"is_causal": True}, "no mask": {}}


def seconds(q, k, v, repeats: int, **kwargs) -> float:
    """Best of ``repeats`` forward-plus-backward passes."""
    best = float("inf")
    for _ in range(repeats + 1):  # the first is a warm-up
        start = time.perf_counter()
        F.scaled_dot_product_attention(q, k, v, **kwargs).sum().backward()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--length", type=int, default=600)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (args.batch, args.heads, args.length, args.head_dim)
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
    print(f"torch {torch.__version__}, {args.threads} thread(s), q/k/v {list(shape)}: forward + backward, seconds")
    print(f"{'mask':<15} {'dropout 0.1':>12} {'no dropout':>12}")
    for name, kwargs in masks(args.batch, args.length).items():
        with_dropout = seconds(q, k, v, args.repeats, dropout_p=0.1, **kwargs)
        without = seconds(q, k, v, args.repeats, **kwargs)
        print(f"{name:<15} {with_dropout:>12.3f} {without:>12.3f}")


if __name__ == "__main__":
    main()
