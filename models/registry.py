"""Model registry: one name -> one constructor plus the preprocessing metadata it was trained with.

Family files register each variant with ``@register_model(meta=...)``; train/eval/infer/predict and the
exported model read the metadata through :func:`get_model_meta`, so preprocessing is defined once.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelMeta:
    """How a model expects its input, and where its classifier lives.

    ``classifier`` lists the state_dict key prefixes of the final classification layer(s); fine-tuning
    reports them when class_dim differs, and ``reset_classifier`` rebuilds them.
    """

    input_size: int = 224
    resize_short: int = 256
    interpolation: str = "bilinear"  # cv2 names: nearest | bilinear | bicubic | area | lanczos
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    classifier: tuple[str, ...] = ("fc",)
    family: str = ""
    min_input_size: int = 32  # smallest square input the network accepts (tests use max(64, this))
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def updated(self, **changes) -> ModelMeta:
        return replace(self, **changes)


DEFAULT_META = ModelMeta()

_CONSTRUCTORS: dict[str, Callable] = {}
_META: dict[str, ModelMeta] = {}


class UnknownModelError(ValueError):
    """Raised for a model name that is not registered; the message suggests the nearest names."""


def register_model(name: str | None = None, meta: ModelMeta = DEFAULT_META):
    """Decorator: register ``fn(class_dim=1000, **options) -> paddle.nn.Layer`` under ``name``."""

    def decorator(fn: Callable) -> Callable:
        key = name or fn.__name__
        if key in _CONSTRUCTORS:
            raise ValueError(f"model {key!r} is registered twice ({fn.__module__})")
        _CONSTRUCTORS[key] = fn
        _META[key] = meta
        return fn

    return decorator


def _ensure_loaded() -> None:
    # Family modules register themselves on import; importing the package imports them all.
    import models  # noqa: F401


def list_models() -> list[str]:
    _ensure_loaded()
    return sorted(_CONSTRUCTORS)


def _check_name(name: str) -> None:
    _ensure_loaded()
    if name not in _CONSTRUCTORS:
        near = difflib.get_close_matches(name, list(_CONSTRUCTORS), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(near)}?" if near else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} `python -m models.summary --list` lists all "
            f"{len(_CONSTRUCTORS)} names."
        )


def get_model_meta(name: str) -> ModelMeta:
    _check_name(name)
    return _META[name]


def build_model(name: str, class_dim: int = 1000, **options):
    """Build a registered model. ``options`` are family specific (e.g. padding_type, use_se, deploy)."""
    _check_name(name)
    if class_dim < 1:
        raise ValueError(f"class_dim must be >= 1, got {class_dim}")
    return _CONSTRUCTORS[name](class_dim=class_dim, **options)
