"""Minibatch plans: the one-factor-varies invariant, before anything is rendered; and the
seeded train/test splits of listed objects."""

from __future__ import annotations

import numpy as np
import pytest

from dcign.shared.errors import DcignError
from dcign.shared.factors import FACE_FACTORS
from dcign.shared.plans import (
    PAPER_CHAIRS,
    IdentityPools,
    distinct_values,
    paper_test_share,
    plan_minibatch,
    split_files,
)

POOLS = IdentityPools(train=50, test=10)


@pytest.mark.parametrize("factor", FACE_FACTORS, ids=lambda f: f.name)
def test_a_plan_varies_only_its_factor(factor):
    plan = plan_minibatch(3, "train", factor, 7, FACE_FACTORS, 20, POOLS)
    for f in FACE_FACTORS:
        if f.is_intrinsic:
            continue
        column = plan.values[:, f.column]
        if f is factor:
            assert len(np.unique(column)) == 20
        else:
            assert (column == column[0]).all()
    distinct_ids = len(np.unique(plan.identities))
    assert distinct_ids == (20 if factor.is_intrinsic else 1)


def test_a_plan_is_a_pure_function_of_seed_split_factor_and_index():
    light = FACE_FACTORS[2]
    a = plan_minibatch(3, "train", light, 7, FACE_FACTORS, 20, POOLS)
    b = plan_minibatch(3, "train", light, 7, FACE_FACTORS, 20, POOLS)
    assert np.array_equal(a.values, b.values) and np.array_equal(a.identities, b.identities)
    for other in (plan_minibatch(4, "train", light, 7, FACE_FACTORS, 20, POOLS),
                  plan_minibatch(3, "test", light, 7, FACE_FACTORS, 20, POOLS),
                  plan_minibatch(3, "train", FACE_FACTORS[0], 7, FACE_FACTORS, 20, POOLS),
                  plan_minibatch(3, "train", light, 8, FACE_FACTORS, 20, POOLS)):
        assert not np.array_equal(a.values, other.values)


def test_varying_values_are_distinct_sorted_and_cover_the_range():
    values = distinct_values(np.random.default_rng(0), -86.0, 86.0, 20)
    assert values.dtype == np.float32 and len(np.unique(values)) == 20
    assert (np.diff(values) > 0).all()
    assert values[0] < -86 + 172 / 20 and values[-1] > 86 - 172 / 20


def test_train_and_test_plans_draw_from_disjoint_identity_pools():
    intrinsic = FACE_FACTORS[3]
    train = {i for k in range(30) for i in
             plan_minibatch(0, "train", intrinsic, k, FACE_FACTORS, 8, POOLS).identities}
    test = {i for k in range(30) for i in
            plan_minibatch(0, "test", intrinsic, k, FACE_FACTORS, 8, POOLS).identities}
    assert max(train) < 50 <= min(test) and max(test) < 60


def test_an_intrinsic_minibatch_larger_than_the_identity_pool_is_refused():
    with pytest.raises(DcignError, match="distinct identities"):
        plan_minibatch(0, "test", FACE_FACTORS[3], 0, FACE_FACTORS, 20, POOLS)


def test_the_papers_test_share_of_its_own_chairs_is_its_150():
    assert paper_test_share(PAPER_CHAIRS.chairs) == PAPER_CHAIRS.test
    assert paper_test_share(6) == 1 and paper_test_share(100) == 11


def test_a_file_split_is_disjoint_complete_and_fixed_by_the_seed():
    pools = split_files(30, 4, seed=2)
    assert len(pools.test) == 4 and not set(pools.train) & set(pools.test)
    assert sorted(pools.train + pools.test) == list(range(30))
    assert split_files(30, 4, seed=2) == pools and split_files(30, 4, seed=3) != pools
