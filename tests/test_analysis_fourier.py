import numpy as np
import pytest
import torch

from longmul.analysis.fourier import (
    basis_shares,
    centroid_pca,
    chance_r2,
    digit_centroids,
    digit_vectors,
    fourier_basis,
    fourier_r2,
    fourier_table,
    frequency_names,
    frequency_spectrum,
    median_r2,
    pooled_r2,
)
from longmul.analysis.geometry import digit_columns
from longmul.evaluate import teacher_forced_batch
from longmul.hooks import run_with_cache
from longmul.model import PRESETS, build_model
from longmul.sequences import DIGIT_ID0, problems_to_pairs
from longmul.task import random_problems

n = np.arange(10)
COS2, SIN2 = np.cos(2 * np.pi * 2 * n / 10), np.sin(2 * np.pi * 2 * n / 10)
COS1, PARITY = np.cos(2 * np.pi * n / 10), (-1.0) ** n


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


def test_basis_is_orthonormal_and_named():
    basis, names = fourier_basis()
    assert names == ["const", "cos1", "sin1", "cos2", "sin2", "cos3", "sin3", "cos4", "sin4", "parity"]
    np.testing.assert_allclose(basis @ basis.T, np.eye(10), atol=1e-12)
    np.testing.assert_allclose(basis[names.index("parity")], PARITY / np.sqrt(10))
    np.testing.assert_allclose(basis[names.index("cos2")], COS2 / np.linalg.norm(COS2))
    odd, odd_names = fourier_basis(7)
    assert odd_names[-1] == "sin3" and "parity" not in odd_names
    np.testing.assert_allclose(odd @ odd.T, np.eye(7), atol=1e-12)
    assert frequency_names((0, 1, 2, 5)) == ["const", "cos1", "sin1", "cos2", "sin2", "parity"]
    with pytest.raises(ValueError, match="frequency 6"):
        frequency_names([6])


def synthetic(rng, parts, d=40):
    """Digit-indexed vectors (10, d): random mixtures of the given functions plus a constant."""
    functions = np.stack(parts, axis=1)  # (10, m)
    return 3.0 + functions @ rng.normal(size=(len(parts), d))


def test_known_frequencies_are_fitted_exactly(rng):
    prism = synthetic(rng, [COS2, SIN2, PARITY])
    np.testing.assert_allclose(fourier_r2(prism, (0, 2, 5)), 1.0)
    assert median_r2(prism) == pytest.approx(1.0) and pooled_r2(prism) == pytest.approx(1.0)
    np.testing.assert_allclose(fourier_r2(prism, (0, 1, 3, 4)), 0.0, atol=1e-12)  # orthogonal: nothing
    np.testing.assert_allclose(fourier_r2(prism, (2, 5)), 1.0)  # the constant is always part of the fit
    assert median_r2(prism, (0, 2)) < 0.95  # parity is missing
    noise = rng.normal(size=(10, 200))  # no structure: 5 of the 9 non-constant functions, ≈ 5/9 by chance
    assert 0.45 < median_r2(noise) < 0.65 and pooled_r2(noise) == pytest.approx(chance_r2(), abs=0.05)
    assert chance_r2() == pytest.approx(5 / 9) and chance_r2([0]) == 0 and chance_r2(range(6)) == 1


def test_cumulative_table_adds_frequencies_one_at_a_time(rng):
    """One dimension: 2·cos1 + 1·parity. Variance shares: cos1 2²·5/(2²·5 + 1·10) = 2/3, parity 1/3."""
    v = (2 * COS1 + PARITY + 7.0)[:, None]
    rows = fourier_table({"toy": v, "prism": synthetic(rng, [COS2, SIN2, PARITY])})
    toy = [r for r in rows if r["object"] == "toy"]
    assert [r["added"] for r in toy] == ["k=0", "k=1", "k=2", "k=5"]
    assert toy[-1]["basis"] == "const, cos1, sin1, cos2, sin2, parity"
    np.testing.assert_allclose([r["median_r2"] for r in toy], [0, 2 / 3, 2 / 3, 1], atol=1e-12)
    np.testing.assert_allclose([r["pooled_r2"] for r in toy], [0, 2 / 3, 2 / 3, 1], atol=1e-12)
    assert [r["chance_r2"] for r in toy] == pytest.approx([0, 2 / 9, 4 / 9, 5 / 9])
    prism = [r for r in rows if r["object"] == "prism"]
    assert prism[1]["median_r2"] == pytest.approx(0.0, abs=1e-12) and prism[-1]["median_r2"] == pytest.approx(1.0)
    reordered = fourier_table({"toy": v}, order=(5, 1))
    np.testing.assert_allclose([r["pooled_r2"] for r in reordered], [1 / 3, 1], atol=1e-12)
    with pytest.raises(ValueError, match="distinct"):
        fourier_table({"toy": v}, order=(1, 1))


def test_flat_dimensions_and_bad_shapes(rng):
    v = np.stack([COS1, np.ones(10)], axis=1)  # the second dimension ignores the digit
    r2 = fourier_r2(v, (0, 1))
    assert r2[0] == pytest.approx(1.0) and np.isnan(r2[1])
    assert median_r2(v, (0, 1)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\(10, d\)"):
        fourier_r2(rng.normal(size=(9, 3)))
    with pytest.raises(ValueError, match="do not vary"):
        pooled_r2(np.ones((10, 3)))


def test_spectrum_and_the_pentagonal_prism(rng):
    spectrum = frequency_spectrum(2 * COS1 + PARITY)
    assert spectrum[1] == pytest.approx(2 / 3) and spectrum[5] == pytest.approx(1 / 3)
    assert sum(spectrum.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one value per digit"):
        frequency_spectrum(np.ones((10, 2)))
    # Two pentagons of radius 3 (k = 2) offset along a parity axis of half-height 1, rotated into 16 dims.
    prism = np.stack([3 * COS2, 3 * SIN2, PARITY], axis=1)  # (10, 3)
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    result = centroid_pca(prism @ rotation[:3] + 0.01 * rng.normal(size=(10, 16)))
    assert result.coords.shape == (10, 3) and result.explained_variance_ratio.sum() > 0.999
    labels = result.axis_labels
    assert labels[0].startswith("PC1: k=2") and labels[1].startswith("PC2: k=2") and labels[2].startswith("PC3: parity")
    records = result.records()
    assert [r["digit"] for r in records] == list(range(10)) and set(records[0]) == {"digit", "pc1", "pc2", "pc3"}


def test_basis_shares_land_on_the_known_frequencies():
    """Synthetic functions built from known basis functions: their variance goes to those functions only,
    in proportion to squared amplitude × the function's own variance (5 for cos/sin, 10 for parity)."""
    rng = np.random.default_rng(3)
    shares = basis_shares(5.0 + 3 * COS2 + 4 * SIN2)  # variances 9·5 : 16·5, the constant carries none
    assert "const" not in shares and set(shares) == set(fourier_basis()[1][1:])
    assert shares["cos2"] == pytest.approx(9 / 25) and shares["sin2"] == pytest.approx(16 / 25)
    assert sum(v for name, v in shares.items() if name not in ("cos2", "sin2")) == pytest.approx(0.0, abs=1e-12)
    shares = basis_shares(2 * COS1 - PARITY)  # 4·5 : 1·10
    assert shares["cos1"] == pytest.approx(2 / 3) and shares["parity"] == pytest.approx(1 / 3)
    assert shares["sin1"] == pytest.approx(0.0, abs=1e-12)
    for name, fn in zip(fourier_basis()[1][1:], fourier_basis()[0][1:]):  # each basis function on its own
        shares = basis_shares(rng.normal() * fn + rng.normal())
        assert shares[name] == pytest.approx(1.0) and sum(shares.values()) == pytest.approx(1.0)
    noise = rng.normal(size=10)  # per frequency, the spectrum is the sum of its cos and sin shares
    shares, spectrum = basis_shares(noise), frequency_spectrum(noise)
    assert sum(shares.values()) == pytest.approx(1.0)
    for k in range(1, 5):
        assert spectrum[k] == pytest.approx(shares[f"cos{k}"] + shares[f"sin{k}"])
    assert spectrum[5] == pytest.approx(shares["parity"])
    with pytest.raises(ValueError, match="do not vary"):
        basis_shares(np.full(10, 3.0))
    with pytest.raises(ValueError, match="one value per digit"):
        basis_shares(np.ones(9))


@pytest.fixture(scope="module")
def model():
    return build_model(PRESETS["tiny"], seed=4).eval()


def test_digit_vectors_of_a_model(model):
    problems = random_problems(400, seed=2)
    vectors = digit_vectors(model, problems, k=2, batch_size=200)
    shapes = {name: v.shape for name, v in vectors.items()}
    assert shapes == {
        "embedding": (10, 32),
        "unembedding": (10, 32),
        "mlp_out_embedding": (10, 128),
        "final_hidden": (10, 32),
        "final_hidden_unembedding": (10, 10),
    }
    np.testing.assert_array_equal(vectors["embedding"], vectors["unembedding"])  # the tiny preset ties them
    w_e = model.transformer.wte.weight[DIGIT_ID0 : DIGIT_ID0 + 10].detach().double()  # (10, d_model)
    np.testing.assert_allclose(vectors["embedding"], w_e.numpy())
    # mlp_out_embedding[:, i]: the digit embeddings read by neuron i's output weights (a row of the Conv1D c_proj)
    c_proj = model.transformer.h[-1].mlp.c_proj.weight.detach().double()  # (d_mlp, d_model)
    for i in (0, 7, 127):
        np.testing.assert_allclose(vectors["mlp_out_embedding"][:, i], (w_e @ c_proj[i]).numpy(), rtol=1e-10)
    # final_hidden_unembedding[n]: the digit logits at the position predicting c2, averaged over the problems
    # whose c2 is n (the unembedding is linear and GPT-2's has no bias, so the mean of the logits is the
    # logits of the mean final hidden state).
    pairs = problems_to_pairs(problems)
    batch = teacher_forced_batch(model, pairs)
    logits, _ = run_with_cache(model, batch.input_ids, batch.position_ids, batch.attention_mask)
    at_c2 = logits[torch.arange(len(pairs)), batch.answer_positions[:, 2], DIGIT_ID0 : DIGIT_ID0 + 10]  # (B, 10)
    c2 = digit_columns(model, problems)["c2"]  # (B,)
    expected = np.stack([at_c2[torch.from_numpy(c2 == n)].double().mean(0).numpy() for n in range(10)])  # (10, 10)
    np.testing.assert_allclose(vectors["final_hidden_unembedding"], expected, rtol=1e-4, atol=1e-5)
    centroids = digit_centroids(model, problems, k=2, site="blocks.1.hook_resid_post")
    assert centroids.shape == (10, 32)
    rows = fourier_table(vectors)
    assert len(rows) == 5 * 4 and all(np.isfinite(r["median_r2"]) for r in rows)
    with pytest.raises(ValueError, match="use more problems"):
        digit_centroids(model, problems[:3], k=2)
    with pytest.raises(ValueError, match="per head"):
        digit_centroids(model, problems, site="blocks.0.attn.hook_z")
