"""The merge-method registry: typed, frozen, picklable settings objects taken by the CLI,
the fingerprint and the engines without renaming."""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from map_common.errors import MAPError
from task_vectors import merging
from task_vectors.merge_methods import (DARE, DARETIES, METHODS, TIES, TaskArithmetic,
                                        method_from_flags)


def test_the_registry_lists_the_methods_by_name_in_order():
    assert list(METHODS) == ["ta", "ties", "dare", "dare-ties", "adamerging"]
    assert METHODS["ties"] is TIES and METHODS["dare-ties"] is DARETIES


def test_settings_are_frozen_picklable_and_read_from_the_flags_by_their_dest():
    flags = {"ties_density": 0.3, "dare_drop_rate": 0.5, "seed": 7, "other": 1}
    ties = method_from_flags("ties", flags)
    assert ties == TIES(density=0.3)
    assert method_from_flags("dare", flags) == DARE(drop_rate=0.5, seed=7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ties.density = 0.5
    assert pickle.loads(pickle.dumps(ties)) == ties
    # what the fingerprint records: the flag's dest, as runs made before the registry did
    assert ties.record() == {"merge_method": "ties", "ties_density": 0.3}
    assert DARE(0.5, 7).record() == {"merge_method": "dare", "dare_drop_rate": 0.5,
                                     "merge_seed": 7}
    assert TaskArithmetic().record() == {"merge_method": "ta"}


def test_bad_settings_are_one_line_errors_when_the_object_is_made():
    with pytest.raises(MAPError, match="density"):
        TIES(density=0.0)
    with pytest.raises(MAPError, match="drop_rate"):
        DARETIES(drop_rate=1.0)
    with pytest.raises(MAPError, match="unknown merge method 'magic'"):
        method_from_flags("magic", {})


@pytest.mark.parametrize("method", [TIES(0.3), DARE(0.4, 1), DARETIES(0.4, 1)])
def test_each_object_transforms_tau_as_the_by_name_shorthand(method):
    tau = torch.tensor(np.random.default_rng(2).normal(size=(3, 20)), dtype=torch.float64)
    by_object, by_name = tau.clone(), tau.clone()
    pickle.loads(pickle.dumps(method)).tau_transform()(by_object)
    merging.tau_transform(method.name, density=0.3, drop_rate=0.4, seed=1)(by_name)
    assert torch.equal(by_object, by_name) and not torch.equal(by_object, tau)
    assert TaskArithmetic().tau_transform() is None
