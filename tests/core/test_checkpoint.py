"""Checkpoints: safe loading only, plans checks, RNG round trip, pretrained weights."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from autoseg.core.checkpoint import (
    load_checkpoint,
    load_pretrained,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from autoseg.core.errors import InvalidInputError
from autoseg.training.optim import encoder_prefixes, freeze, trainable_parameters
from tests.networks.conftest import tiny_network


class Exploit:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_without_running_it(tmp_path: Path) -> None:
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    with path.open("wb") as handle:
        pickle.dump({"model": Exploit(marker)}, handle, protocol=2)
    torch.save({"model": {}, "payload": Exploit(marker)}, tmp_path / "evil2.pt")
    for bad in (path, tmp_path / "evil2.pt"):
        with pytest.raises(InvalidInputError, match="refused"):
            load_checkpoint(bad)
    assert not marker.exists()


def test_plans_id_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_latest.pt"
    save_checkpoint(path, {"plans_id": "abc", "model": {"w": torch.ones(2)}})
    assert load_checkpoint(path, plans_id="abc")["format_version"] == 1
    with pytest.raises(InvalidInputError, match=r"plans_id abc.*plans_id xyz"):
        load_checkpoint(path, plans_id="xyz")
    with pytest.raises(InvalidInputError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_latest.pt"]  # no temp left


def test_rng_states_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    save_checkpoint(tmp_path / "c.pt", {"rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_pretrained_weights_are_shape_checked_and_reported(tmp_path: Path) -> None:
    source = tiny_network("3d_hybrid", seed=1, num_classes=2)  # other classes: other heads
    save_checkpoint(tmp_path / "final.pt", {"model": source.state_dict(), "plans_id": "other"})
    target = tiny_network("3d_hybrid", seed=2)
    report = load_pretrained(target, tmp_path / "final.pt")
    assert report.shape_mismatch and all("-> (3," in e for e in report.shape_mismatch)
    assert not report.missing and not report.unexpected
    loaded = report.loaded[0]
    assert torch.equal(target.state_dict()[loaded], source.state_dict()[loaded])
    head = report.shape_mismatch[0].split()[0]
    assert target.state_dict()[head].shape[0] == 3  # left at its own initial value
    assert "shape mismatch" in report.summary()


def test_freezing_the_encoder(tmp_path: Path) -> None:
    net = tiny_network("3d_hybrid")
    prefixes = encoder_prefixes(net)
    assert prefixes == ["stem.", "encoder."]
    frozen = freeze(net, prefixes)
    assert frozen and all(n.startswith(("stem.", "encoder.")) for n in frozen)
    trainable = trainable_parameters(net)
    assert len(trainable) == len(list(net.parameters())) - len(frozen) > 0
    assert encoder_prefixes(tiny_network("2d_lcnn")) == ["local.encoder.", "global_path.trunk."]
    with pytest.raises(InvalidInputError, match="no parameter"):
        freeze(net, ["nothing."])
