"""The dense CRF: agreement with the C++ reference, region recovery, the lattice against an
exact Gaussian filter, batching, gradients and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atrous.evaluation import crf_grid_search
from atrous.models.wrappers import permutohedral
from atrous.refine import (
    CRFParams,
    DenseCRF,
    PermutohedralLattice,
    dense_crf,
    reference_available,
)
from atrous.refine import crf as crf_module

needs_reference = pytest.mark.skipif(
    not reference_available(), reason="pydensecrf2 (atrous[crf]) not installed"
)


def structured(size: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Discs of random colours on a dark background, and noisy softmax scores that favour
    each disc's label: a CRF has real boundaries to snap to."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:size, :size]
    image = np.zeros((size, size, 3), np.float32)
    label = np.zeros((size, size), np.int64)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 10, size / 4)]
        disc = (xs - cx) ** 2 + (ys - cy) ** 2 < r * r
        image[disc] = rng.uniform(0, 255, 3)
        label[disc] = rng.integers(0, classes)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    logits = rng.normal(0, 1.5, (classes, size, size)).astype(np.float32)
    logits[label, ys, xs] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(0)
    return image, probs.astype(np.float32)


def uniform_noise(size: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    probs = rng.random((classes, size, size)).astype(np.float32)
    return image, probs / probs.sum(0)


def two_regions(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A dark left and a bright right half, the truth, and scores that favour the right label
    by 0.65 to 0.35 but are wrong on a random 30% of the pixels."""
    rng = np.random.default_rng(0)
    image = np.full((size, size, 3), 30, np.uint8)
    image[:, size // 2 :] = 220
    truth = np.zeros((size, size), np.int64)
    truth[:, size // 2 :] = 1
    noisy = np.where(rng.random((size, size)) < 0.3, 1 - truth, truth)
    probs = np.stack([noisy == 0, noisy == 1]).astype(np.float32) * 0.3 + 0.35
    return image, truth, probs


@needs_reference
@pytest.mark.parametrize(
    ("make", "size"), [(structured, 513), (uniform_noise, 513)], ids=["structured", "random"]
)
def test_torch_backend_agrees_with_reference(make, size: int) -> None:
    image, probs = make(size, 21, seed=3)
    ref = dense_crf(image, probs, backend="reference")
    ours = dense_crf(image, probs, backend="torch")
    assert ours.shape == ref.shape == (21, size, size)
    agree = (ours.argmax(0) == ref.argmax(0)).mean()
    changed = (ref.argmax(0) != probs.argmax(0)).mean()
    assert changed > 0.1  # the CRF did real work, so agreement is not just "both kept the input"
    assert agree >= 0.99
    assert np.abs(ours - ref).max() < 1e-2


@needs_reference
def test_auto_takes_the_reference_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = crf_module._reference
    monkeypatch.setattr(crf_module, "_reference", lambda *a: calls.append(1) or real(*a))
    image, probs = structured(33, 3, seed=0)
    dense_crf(image, probs)
    assert calls == [1]


@pytest.mark.parametrize("backend", ["torch", pytest.param("reference", marks=needs_reference)])
def test_two_regions_with_noisy_unary_are_recovered(backend: str) -> None:
    image, truth, probs = two_regions(64)
    assert (probs.argmax(0) == truth).mean() < 0.75
    refined = dense_crf(image, probs, backend=backend)
    assert np.allclose(refined.sum(0), 1.0, atol=1e-5)
    assert (refined.argmax(0) == truth).mean() >= 0.99


def test_lattice_matches_an_exact_gaussian_filter() -> None:
    """The lattice approximates sum_j exp(-|f_i - f_j|^2 / 2) v_j up to a global scale."""
    g = torch.Generator().manual_seed(0)
    features = torch.rand(300, 3, generator=g) * 4
    values = torch.rand(300, 2, generator=g)
    exact = torch.exp(-(torch.cdist(features, features) ** 2) / 2) @ values
    approx = PermutohedralLattice(features).filter(values)
    for c in range(2):
        corr = torch.corrcoef(torch.stack([exact[:, c], approx[:, c]]))[0, 1]
        assert corr > 0.98
    ratio = approx / exact
    assert ratio.std() / ratio.mean() < 0.1


def test_lattice_keeps_groups_apart() -> None:
    g = torch.Generator().manual_seed(1)
    features = torch.rand(50, 2, generator=g)
    values = torch.rand(50, 3, generator=g)
    alone = PermutohedralLattice(features).filter(values)
    both = PermutohedralLattice(
        torch.cat([features, features]), torch.arange(2).repeat_interleave(50)
    ).filter(torch.cat([values, 10 * values]))
    torch.testing.assert_close(both[:50], alone)
    torch.testing.assert_close(both[50:], 10 * alone)


@pytest.mark.parametrize("dims", [2, 5])
def test_lattice_backward_is_the_transposed_filter(dims: int) -> None:
    """The hand-written backward (the filter run with its axes reversed) equals the transpose
    of the filter's matrix, built column by column from one-hot inputs, and is differentiable
    again (gradgradcheck)."""
    g = torch.Generator().manual_seed(2)
    points = 40
    lattice = PermutohedralLattice(torch.rand(points, dims, generator=g) * 3)
    matrix = lattice.filter(torch.eye(points, dtype=torch.float64))  # column j: K e_j
    values = torch.rand(points, 3, dtype=torch.float64, generator=g, requires_grad=True)
    upstream = torch.rand(points, 3, dtype=torch.float64, generator=g)
    (grad,) = torch.autograd.grad(lattice.filter(values), values, upstream)
    torch.testing.assert_close(grad, matrix.T @ upstream, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(matrix, matrix.T)  # not symmetric: the test can tell them apart
    assert torch.autograd.gradgradcheck(lattice.filter, (values,))


@pytest.mark.parametrize("dims", [2, 5])
def test_lattice_in_chunks_equals_one_call(monkeypatch: pytest.MonkeyPatch, dims: int) -> None:
    """On the CPU large lattices splat, blur and slice in chunks of bags into reused buffers;
    with a chunk of 7 bags (uneven splat bags, a ragged last chunk) the filter, a second call
    through the reused buffers and the transposed backward equal the unchunked ones."""
    g = torch.Generator().manual_seed(3)
    features = torch.rand(60, dims, generator=g) * 3
    values = torch.rand(60, 4, dtype=torch.float64, generator=g, requires_grad=True)
    upstream = torch.rand(60, 4, dtype=torch.float64, generator=g)
    whole = PermutohedralLattice(features, normalize=True)
    expected = whole.filter(values)
    (expected_grad,) = torch.autograd.grad(expected, values, upstream)
    monkeypatch.setattr(permutohedral, "_CHUNK", 7)
    chunked = PermutohedralLattice(features, normalize=True)
    assert chunked.num_vertices > 2 * 7  # the vertices really span several chunks
    torch.testing.assert_close(chunked.filter(values), expected, rtol=1e-12, atol=1e-12)
    out = chunked.filter(values)  # the buffers again
    (grad,) = torch.autograd.grad(out, values, upstream)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)


def test_normalized_lattice_is_the_symmetric_normalisation() -> None:
    """``normalize=True`` filters with D^-1/2 K D^-1/2, D = diag(K 1) (densecrf's
    NORMALIZE_SYMMETRIC), computed here by hand from the plain lattice."""
    g = torch.Generator().manual_seed(4)
    features = torch.rand(80, 5, generator=g) * 3
    values = torch.rand(80, 3, dtype=torch.float64, generator=g)
    plain = PermutohedralLattice(features)
    norm = plain.filter(torch.ones(80, 1, dtype=torch.float64)).rsqrt()
    expected = norm * plain.filter(norm * values)
    normalized = PermutohedralLattice(features, normalize=True).filter(values)
    torch.testing.assert_close(normalized, expected, rtol=1e-6, atol=1e-9)
    assert not torch.allclose(normalized, plain.filter(values), rtol=1e-3)


def test_batched_layer_equals_one_image_at_a_time() -> None:
    crf = DenseCRF(CRFParams(iterations=3))
    images, logits = [], []
    for seed in (0, 1):
        image, probs = structured(40, 4, seed)
        images.append(torch.from_numpy(image).permute(2, 0, 1))
        logits.append(torch.from_numpy(probs).log())
    batch = crf(torch.stack(logits), torch.stack(images))
    for i in range(2):
        single = crf(logits[i][None], images[i][None])
        torch.testing.assert_close(batch[i], single[0], atol=1e-5, rtol=1e-5)


def test_layer_gradients_reach_logits_and_kernel_weights() -> None:
    image, probs = structured(12, 3, seed=2)
    image_t = torch.from_numpy(image).permute(2, 0, 1)[None]
    logits = torch.from_numpy(probs).log()[None].double().requires_grad_()
    crf = DenseCRF(CRFParams(iterations=2), num_classes=3).double()
    assert torch.autograd.gradcheck(lambda z: crf(z, image_t), (logits,), atol=1e-6)
    crf(logits, image_t).logsumexp(1).sum().backward()
    for p in (crf.w_appearance, crf.w_smoothness, crf.compatibility):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_potts_layer_equals_learnable_compatibility_at_init() -> None:
    image, probs = structured(20, 3, seed=4)
    image_t = torch.from_numpy(image).permute(2, 0, 1)[None]
    logits = torch.from_numpy(probs).log()[None]
    potts = DenseCRF(CRFParams(iterations=4))(logits, image_t).softmax(1)
    matrix = DenseCRF(CRFParams(iterations=4), num_classes=3)(logits, image_t).softmax(1)
    torch.testing.assert_close(potts, matrix, atol=1e-5, rtol=1e-5)


def test_zero_iterations_return_the_input() -> None:
    image, probs = structured(16, 3, seed=5)
    out = dense_crf(image, probs, iterations=0, backend="torch")
    np.testing.assert_allclose(out, probs, atol=1e-6)


def test_tensor_in_tensor_out() -> None:
    image, probs = structured(16, 3, seed=6)
    out = dense_crf(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(probs))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 16, 16)


def test_errors_name_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    image, probs = structured(16, 3, seed=7)
    with pytest.raises(ValueError, match="uint8"):
        dense_crf(image.astype(np.float32), probs)
    with pytest.raises(ValueError, match=r"probs must be CxHxW.*\(16, 16\)"):
        dense_crf(image, probs[:, :8])
    with pytest.raises(ValueError, match="backend"):
        dense_crf(image, probs, backend="cuda")
    with pytest.raises(ValueError, match="theta_alpha"):
        dense_crf(image, probs, theta_alpha=0)
    monkeypatch.setattr(crf_module, "reference_available", lambda: False)
    with pytest.raises(ImportError, match=r"atrous\[crf\]"):
        dense_crf(image, probs, backend="reference")


def test_grid_search_scores_every_combination_best_first() -> None:
    image, truth, probs = two_regions(32)
    grid = {"w_appearance": (0.0, 5.0), "theta_beta": (3.0, 5.0)}
    results = crf_grid_search(
        [(image, probs, truth)], 2, grid=grid, backend="torch", progress=False, w_smoothness=0.0
    )
    assert len(results) == 4
    assert [r["miou"] for r in results] == sorted((r["miou"] for r in results), reverse=True)
    # With no pairwise term at all the noise stays; the appearance kernel removes it.
    assert results[0]["w_appearance"] == 5.0 and results[-1]["w_appearance"] == 0.0
    assert results[0]["miou"] > 0.95 > 0.7 > results[-1]["miou"]
    with pytest.raises(ValueError, match="unknown CRF parameters"):
        crf_grid_search([(image, probs, truth)], 2, grid={"theta_delta": (1.0,)})


def test_training_the_kernel_weights_lowers_the_loss() -> None:
    """CRF-as-RNN: with the unary fixed, learning w_appearance alone fits noisy scores to a
    two-region image better."""
    image, truth, probs = two_regions(32)
    logits = torch.from_numpy(probs).log()[None]
    image_t = torch.from_numpy(image).permute(2, 0, 1)[None]
    target = torch.from_numpy(truth)[None]
    crf = DenseCRF(CRFParams(iterations=3, w_appearance=0.5, w_smoothness=0.0))
    crf.w_smoothness.requires_grad_(False)
    optimizer = torch.optim.Adam([crf.w_appearance], lr=0.5)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(crf(logits, image_t), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert crf.w_appearance.item() > 2.0


def test_layer_runs_in_fp32_under_autocast() -> None:
    """Mixed-precision training and Predictor(fast=True) run the model under bf16 autocast;
    the sparse lattice products have no bf16 kernels, so the CRF opts out and stays exact."""
    image, probs = structured(24, 3, seed=9)
    image_t = torch.from_numpy(image).permute(2, 0, 1)[None]
    logits = torch.from_numpy(probs).log()[None]
    crf = DenseCRF(CRFParams(iterations=3))
    exact = crf(logits, image_t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = crf(logits.bfloat16(), image_t)
    assert mixed.dtype == torch.bfloat16
    torch.testing.assert_close(mixed.float(), exact, atol=0.05, rtol=0.02)


@pytest.mark.gpu
def test_torch_backend_on_cuda_matches_cpu() -> None:
    image, probs = structured(129, 21, seed=10)
    cpu = dense_crf(image, probs, backend="torch")
    cuda = dense_crf(
        torch.from_numpy(image).permute(2, 0, 1).cuda(), torch.from_numpy(probs).cuda()
    )  # "auto" takes ours for CUDA inputs
    assert cuda.device.type == "cuda"
    assert (cuda.argmax(0).cpu().numpy() == cpu.argmax(0)).mean() >= 0.999
    np.testing.assert_allclose(cuda.cpu().numpy(), cpu, atol=1e-3)
