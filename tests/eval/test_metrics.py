"""Disentanglement metrics on representations whose answers are known.

A code equal to the factors is perfectly disentangled (≈ 1); a random code carries nothing
(≈ 0, FactorVAE ≈ chance); permuting the latents changes no metric; a code that mixes two
factors into one latent scores lower than the pure one.
"""

import numpy as np
import pytest

from dcign.train.eval.disentanglement import dci, discretize, factorvae_score, mig, sap

N, K = 3000, 3


@pytest.fixture(scope="module")
def factors():
    return np.random.default_rng(0).uniform(-1, 1, size=(N, K))


@pytest.fixture(scope="module")
def random_code():
    return np.random.default_rng(1).normal(size=(N, 6))


def all_scores(code, factors):
    fd = discretize(factors, 10, [(-1, 1)] * K)
    d = dci(code, factors, np.random.default_rng(2))
    return {"mig": mig(code, fd)["mig"],
            "sap": sap(code, factors)["sap"],
            "dci": d["disentanglement"],
            "completeness": d["completeness"],
            "factorvae": factorvae_score(code, fd, np.random.default_rng(3), 32, 600,
                                         300)["factorvae"]}


def test_discretize_cuts_equal_width_bins_over_the_stated_range():
    values = np.array([[-1.0], [-0.01], [0.0], [0.99], [1.0]])
    assert discretize(values, 4, [(-1, 1)])[:, 0].tolist() == [0, 1, 2, 3, 3]
    assert discretize(np.ones((3, 1)), 4)[:, 0].tolist() == [0, 0, 0]


def test_a_code_equal_to_the_factors_scores_near_one_on_every_metric(factors):
    scores = all_scores(factors, factors)
    assert scores["mig"] > 0.8  # MIG's estimator bias keeps it a little below 1
    for name in ("sap", "dci", "completeness", "factorvae"):
        assert scores[name] > 0.95, (name, scores)


def test_a_code_with_extra_small_noise_latents_stays_disentangled(factors,
                                                                              random_code):
    code = np.hstack([factors, 0.01 * random_code])
    scores = all_scores(code, factors)
    assert scores["sap"] > 0.95 and scores["dci"] > 0.9 and scores["factorvae"] > 0.9


def test_a_random_code_scores_near_zero_and_factorvae_near_chance(factors, random_code):
    scores = all_scores(random_code, factors)
    for name in ("mig", "sap", "dci"):
        assert scores[name] < 0.1, (name, scores)
    assert scores["factorvae"] < 0.6  # chance is 1/3; a majority vote overfits a little
    assert dci(random_code, factors, np.random.default_rng(2))["informativeness"] < 0.05


def test_permuting_the_latents_changes_no_metric(factors, random_code):
    code = np.hstack([factors + 0.1 * random_code[:, :K], random_code[:, K:]])
    permuted = code[:, np.random.default_rng(4).permutation(code.shape[1])]
    a, b = all_scores(code, factors), all_scores(permuted, factors)
    for name in ("mig", "sap"):
        assert a[name] == pytest.approx(b[name], abs=1e-9), name
    # trees break ties between equally good splits by feature order, votes by latent index
    for name in ("dci", "completeness"):
        assert a[name] == pytest.approx(b[name], abs=1e-3), name
    assert a["factorvae"] == pytest.approx(b["factorvae"], abs=0.02)


def test_mixing_two_factors_into_one_latent_lowers_every_metric(factors):
    rotated = factors.copy()
    rotated[:, 0], rotated[:, 1] = (factors[:, 0] + factors[:, 1],
                                    factors[:, 0] - factors[:, 1])
    pure, mixed = all_scores(factors, factors), all_scores(rotated, factors)
    for name in ("mig", "sap", "dci", "factorvae"):
        assert mixed[name] < pure[name] - 0.1, (name, pure[name], mixed[name])


def test_sap_is_the_r2_of_a_fitted_single_latent_regression(factors, random_code):
    from sklearn.linear_model import LinearRegression

    code = np.hstack([factors[:, :1] + random_code[:, :1], random_code[:, 1:]])
    gaps = sap(code, factors)["per_factor"]
    r2 = sorted((LinearRegression().fit(code[:, [i]], factors[:, 0])
                 .score(code[:, [i]], factors[:, 0]) for i in range(code.shape[1])),
                reverse=True)
    assert gaps[0] == pytest.approx(r2[0] - r2[1], abs=1e-9)


def test_metrics_are_deterministic_given_their_seeds(factors, random_code):
    code = factors + 0.3 * random_code[:, :K]
    assert all_scores(code, factors) == all_scores(code, factors)


def test_mutual_information_matches_scikit_learn_pair_by_pair(factors, random_code):
    from sklearn.metrics import mutual_info_score

    from dcign.train.eval.disentanglement import mutual_information

    codes_d = discretize(np.hstack([factors[:, :1] + random_code[:, :1], random_code]), 7)
    factors_d = discretize(factors, 5)
    mi = mutual_information(codes_d, factors_d)
    expected = [[mutual_info_score(factors_d[:, k], codes_d[:, i]) for k in range(K)]
                for i in range(codes_d.shape[1])]
    assert np.allclose(mi, expected, atol=1e-12)


def test_scores_on_a_store_with_an_encoder_equal_scores_on_the_same_codes_as_arrays(tmp_path):
    """disentanglement_lib's way in (a dataset plus a representation function) and ours (arrays
    already encoded) draw the same images and give the same numbers for the same seed."""
    from dcign.shared.store import open_store
    from dcign.train.eval.disentanglement import pooled, scores
    from dcign.train.synthetic import write_blob_store

    store = open_store(write_blob_store(tmp_path / "b.zarr", 32, train_batches=1,
                                        test_batches=3))

    def encode(images):  # a deterministic stand-in for a network: brightness statistics
        flat = images.reshape(len(images), -1).astype(float)
        return np.stack([flat.mean(1), flat.std(1), (flat > 0).mean(1)], axis=1)

    groups = [store.read_complete("test", f) for f in store.factors_present("test")]
    images = np.concatenate([g.images.reshape(-1, 32, 32) for g in groups])
    values = np.concatenate([g.values.reshape(-1, 3) for g in groups])
    from_store = scores(store, encode, seed=3, samples=150)
    from_arrays = scores(pooled(store, encode(images), values), seed=3, samples=150)
    assert from_store == from_arrays
    assert from_store["samples"] == 150 and from_store["factors"] == ["azimuth", "elevation",
                                                                         "light"]
