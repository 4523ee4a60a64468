"""Every registered name builds; manifest names match PaddleClas state_dict keys, order, shapes and params.

Models are built under ``paddle.LazyGuard`` so even the 829M-parameter wsl models allocate no weights.
"""
import json
import math

import paddle
import pytest

import models
from tests.conftest import SHARED

MANIFEST_PATH = SHARED / "zoo" / "state_dict_manifest.json"
NAMES_PATH = SHARED / "zoo" / "model_names.txt"

needs_zoo = pytest.mark.skipif(not MANIFEST_PATH.exists(), reason=f"{MANIFEST_PATH} not present")


def _manifest() -> dict:
    return json.loads(MANIFEST_PATH.read_text()) if MANIFEST_PATH.exists() else {}


def _classic_names() -> list[str]:
    return NAMES_PATH.read_text().split() if NAMES_PATH.exists() else []


def lazy_build(name: str, **options):
    with paddle.LazyGuard():
        return models.build_model(name, class_dim=1000, **options)


def manifest_params(model) -> int:
    """What the manifest's "params" counts: every parameter tensor, BatchNorm running statistics included
    (checked: it equals the state_dict's total size for all 112 entries). Shapes, not numel(): lazily
    built parameters have no storage."""
    return sum(math.prod(p.shape) for p in model.parameters())


@needs_zoo
@pytest.mark.parametrize("name", sorted(_manifest()))
def test_state_dict_matches_manifest(name):
    entry = _manifest()[name]
    model = lazy_build(name)
    ours = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    expected = entry["state_dict"]
    missing = {k for k, _ in expected} - {k for k, _ in ours}
    extra = {k for k, _ in ours} - {k for k, _ in expected}
    assert not missing and not extra, f"missing {sorted(missing)[:8]} extra {sorted(extra)[:8]}"
    assert ours == expected
    assert manifest_params(model) == entry["params"]


@needs_zoo
@pytest.mark.parametrize("name", _classic_names())
def test_every_classic_name_is_registered(name):
    assert name in models.list_models()


def test_unknown_model_suggests_nearest():
    with pytest.raises(models.UnknownModelError, match="ResNet50_vd"):
        models.build_model("ResNet50vd")
