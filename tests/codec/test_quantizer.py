"""MCRVQ and plain RVQ: masking property, k-means init, EMA, dead codes, straight-through, quantizer sampling."""

from __future__ import annotations

import pytest
import torch

from codec.config import QuantizerConfig
from codec.quantizer import MaskedChannelResidualQuantizer, ResidualQuantizer, build_quantizer, kmeans, nearest_codes

DIM = 24


def trained(kind: str, steps: int = 3) -> ResidualQuantizer:
    q = build_quantizer(DIM, QuantizerConfig(kind=kind, codebook_size=32, kmeans_iters=5)).train()
    for _ in range(steps):
        q(torch.randn(4, DIM, 50), num_quantizers=8)
    return q.eval()


def test_kinds():
    assert type(trained("mcrvq")) is MaskedChannelResidualQuantizer
    assert type(trained("rvq")) is ResidualQuantizer
    assert trained("mcrvq").bounds == [0, 8, 16, 24]


@pytest.mark.parametrize("group", [0, 1, 2])
def test_mcrvq_codes_ignore_channels_outside_their_group(group):
    q = trained("mcrvq")
    z = torch.randn(2, DIM, 40)
    lo, hi = q.bounds[group], q.bounds[group + 1]
    outside = torch.ones(DIM, dtype=torch.bool)
    outside[lo:hi] = False
    z2 = z.clone()
    z2[:, outside] = torch.randn_like(z2[:, outside]) * 3
    a, b = q(z).codes, q(z2).codes
    assert torch.equal(a[:, group], b[:, group])
    others = [k for k in range(8) if k != group]
    assert not torch.equal(a[:, others], b[:, others])
    z3 = z.clone()
    z3[:, lo:hi] = torch.randn_like(z3[:, lo:hi]) * 3
    assert not torch.equal(q(z3).codes[:, group], a[:, group])


def test_plain_rvq_first_code_sees_every_channel():
    q = trained("rvq")
    z = torch.randn(2, DIM, 40)
    z2 = z.clone()
    z2[:, 8:] = torch.randn_like(z2[:, 8:]) * 3
    assert not torch.equal(q(z).codes[:, 0], q(z2).codes[:, 0])


@pytest.mark.parametrize("kind", ["mcrvq", "rvq"])
def test_eval_matches_a_direct_computation(kind):
    """Reference written independently from the module: nearest codeword by explicit distances, step by step."""
    q = trained(kind)
    z = torch.randn(2, DIM, 30)
    out = q(z)
    books = [layer.codebook.embed for layer in q.layers]

    def nn_code(x, book):  # x [B, D, T]
        d = ((x.transpose(1, 2)[..., None, :] - book) ** 2).sum(-1)
        return d.argmin(-1)

    codes, total = [], torch.zeros_like(z)
    if kind == "mcrvq":
        parallel = torch.zeros_like(z)
        for k in range(3):
            masked = torch.zeros_like(z)
            masked[:, q.bounds[k]:q.bounds[k + 1]] = z[:, q.bounds[k]:q.bounds[k + 1]]
            c = nn_code(masked, books[k])
            codes.append(c)
            parallel += books[k][c].transpose(1, 2)
        residual, start = z - parallel, 3
        total += parallel
    else:
        residual, start = z, 0
    for k in range(start, 8):
        c = nn_code(residual, books[k])
        codes.append(c)
        residual = residual - books[k][c].transpose(1, 2)
        total += books[k][c].transpose(1, 2)
    assert torch.equal(out.codes, torch.stack(codes, 1))
    assert torch.allclose(out.quantized, total, atol=1e-5)
    assert torch.allclose(q.decode(out.codes), total, atol=1e-5)


def test_kmeans_init_on_first_batch():
    q = build_quantizer(DIM, QuantizerConfig(codebook_size=16, kmeans_iters=10)).train()
    assert all(layer.codebook.inited.item() == 0 for layer in q.layers)
    z = torch.randn(2, DIM, 100)
    q(z, num_quantizers=8)
    book = q.layers[3].codebook
    assert book.inited.item() == 1 and book.embed.abs().sum() > 0
    # Masked-group codebooks are initialized on masked inputs: zero outside their group.
    assert q.layers[0].codebook.embed[:, 8:].abs().max() < 1e-6


def test_kmeans_converges_to_centroids():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    samples = torch.cat([c + 0.5 * torch.randn(200, 2) for c in centers])

    def inertia(means):
        return ((samples - means[nearest_codes(samples, means)]) ** 2).sum()

    torch.manual_seed(1)
    start = samples[torch.randperm(len(samples))[:4]]
    torch.manual_seed(1)
    means, sizes = kmeans(samples, 4, 20)
    assert sizes.sum() == len(samples) and inertia(means) < inertia(start)
    assign = nearest_codes(samples, means)  # a fixed point of Lloyd's iteration: each mean is its cluster's centroid
    for k in range(4):
        assert torch.allclose(means[k], samples[assign == k].mean(0), atol=1e-4)


def test_ema_moves_codebook_towards_data():
    q = build_quantizer(DIM, QuantizerConfig(kind="rvq", codebook_size=8, kmeans_iters=1,
                                             threshold_ema_dead_code=0)).train()
    q(torch.randn(2, DIM, 50), num_quantizers=1)
    target = torch.full((DIM,), 5.0)
    for _ in range(300):
        q(target[None, :, None].expand(2, DIM, 50).clone(), num_quantizers=1)
    book = q.layers[0].codebook
    used = book.cluster_size.argmax()
    assert torch.allclose(book.embed[used], target, atol=0.1)


def test_dead_codes_are_replaced_consistently():
    cfg = QuantizerConfig(kind="rvq", codebook_size=16, kmeans_iters=1, threshold_ema_dead_code=2.0)
    q = build_quantizer(DIM, cfg).train()
    q(torch.randn(2, DIM, 50), num_quantizers=1)
    book = q.layers[0].codebook
    book.cluster_size.zero_()  # every code is dead
    data = torch.randn(2, DIM, 50) + 100.0
    q(data, num_quantizers=1)
    flat = data.transpose(1, 2).reshape(-1, DIM)
    # every codeword is now one of the current inputs, and embed_avg / cluster_size agree with embed
    assert (book.embed[:, None] - flat[None]).abs().amax(-1).min(dim=1).values.max() < 1e-4
    assert torch.allclose(book.embed_avg / book.cluster_size[:, None], book.embed, atol=1e-4)


@pytest.mark.parametrize("kind", ["mcrvq", "rvq"])
def test_straight_through_and_commitment(kind):
    q = trained(kind).train()
    z = torch.randn(2, DIM, 20, requires_grad=True)
    out = q(z, num_quantizers=8)
    assert out.commit_loss.item() > 0
    out.quantized.sum().backward()
    # Straight-through: every layer passes the output gradient to its input; each channel gets it from exactly one
    # masked group (MCRVQ) or the first layer (RVQ), plus once per later residual layer.
    expected = 1.0 + (8 - 3 if kind == "mcrvq" else 7)
    assert torch.allclose(z.grad, torch.full_like(z, expected))


def test_training_samples_number_of_quantizers():
    q = trained("mcrvq").train()
    seen = {q(torch.randn(1, DIM, 10)).codes.shape[1] for _ in range(60)}
    assert seen == {3, 4, 5, 6, 7, 8}
    assert q.eval()(torch.randn(1, DIM, 10)).codes.shape[1] == 8
