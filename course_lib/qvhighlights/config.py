"""The settings of a QVHighlights run, read from a json file (default: ``coreba_qvhighlights.json``).

The file has three sections, each checked field by field (unknown or bad fields are named with
the file): ``features`` (:class:`~course_lib.qvhighlights.release.FeatureSettings`), ``model``
(:class:`~course_lib.alignment.CorebaConfig` fields except ``d_v``, ``d_t`` and ``max_clips``,
which come from the features) and ``training``
(:class:`~course_lib.training.MomentTrainingConfig`; its ``max_clips`` / ``max_tokens`` are the
features' ``max_v_l`` / ``max_q_l``). Free-text keys ``about`` and ``sources`` document the file
and are not read.

The shipped file holds COREBA's QVHighlights settings (COREBA Sec. IV-B "Implementation Details":
7 balance tokens, one CFC module run ``N_r = 3`` times, 2 saliency-encoder and 2 decoder layers,
``d = 256``, loss weights ``lambda_L1 10, lambda_gIoU 1, lambda_CE 4, lambda_marg 1,
lambda_cont 1, lambda_neg 1``, 200 epochs, lr 1e-4, batch 32, SlowFast + CLIP video features and
CLIP text features); what the paper leaves open comes from QD-DETR / moment_detr's
``config.py`` (8 heads, FFN 1024, dropout 0.1, input dropout 0.5, 10 moment queries, weight decay
1e-4, gradient clip 0.1, seed 2018, matching costs 10 / 1 / 4, background weight 0.1).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from course_lib.alignment import CorebaConfig
from course_lib.datasets.safe_read import read_json_file, short_repr
from course_lib.errors import DataValidationError
from course_lib.qvhighlights.release import FeatureSettings
from course_lib.training.config import MomentTrainingConfig, config_from_dict

#: The shipped settings (COREBA on QVHighlights).
DEFAULT_CONFIG = Path(__file__).with_name("coreba_qvhighlights.json")
SECTIONS = ("features", "model", "training")
DOC_KEYS = ("about", "sources")
#: Model fields set from the features, never from the file.
DERIVED_MODEL_FIELDS = ("d_v", "d_t", "max_clips")
#: Training fields that do not change results: a resumed run may use other values.
RUNTIME_FIELDS = ("device", "progress", "num_workers", "epochs")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a QVHighlights run.

    Attributes:
        features: how the model input is built.
        model: :class:`CorebaConfig` fields other than :data:`DERIVED_MODEL_FIELDS`.
        training: optimisation, losses and evaluation (caps equal to the features').
    """

    features: FeatureSettings
    model: dict[str, Any]
    training: MomentTrainingConfig

    def model_config(self, d_v: int, d_t: int) -> CorebaConfig:
        """The :class:`CorebaConfig` for inputs ``d_v`` / ``d_t`` wide."""
        return CorebaConfig(**self.model, d_v=d_v, d_t=d_t, max_clips=self.features.max_v_l)

    def to_dict(self) -> dict:
        """The json form (what :func:`run_config_from_dict` reads)."""
        return {
            "features": dataclasses.asdict(self.features),
            "model": dict(self.model),
            "training": self.training.to_dict(),
        }


def _section(data: dict, name: str, where: str) -> dict:
    """One section of the file as a dict (empty when absent)."""
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise DataValidationError(
            f"{where}: section {name!r} must be an object, got {short_repr(value)}"
        )
    return value


def run_config_from_dict(data: Any, where: str) -> RunConfig:
    """Check a parsed config and build it.

    Args:
        data: the parsed json.
        where: the file, for messages.

    Returns:
        The run config.

    Raises:
        DataValidationError: not an object, an unknown section or field, a derived field set,
            a bad value, or caps that contradict the features (names the file and field).
    """
    # 1. the sections
    if not isinstance(data, dict):
        raise DataValidationError(f"{where}: expected a json object, got {short_repr(data)}")
    unknown = sorted(set(data) - set(SECTIONS) - set(DOC_KEYS))
    if unknown:
        raise DataValidationError(
            f"{where}: unknown section(s) {short_repr(unknown)}; known: {', '.join(SECTIONS + DOC_KEYS)}"
        )
    # 2. features
    features = config_from_dict(
        FeatureSettings, _section(data, "features", where), f"{where}: section 'features'"
    )
    # 3. model: derived fields refused, the rest checked by building a CorebaConfig
    model = dict(_section(data, "model", where))
    derived = [name for name in DERIVED_MODEL_FIELDS if name in model]
    if derived:
        raise DataValidationError(
            f"{where}: section 'model' sets {', '.join(derived)}; these come from the features "
            "(--video-features, max_v_l), remove them"
        )
    built = config_from_dict(
        CorebaConfig, {**model, "d_v": 1, "d_t": 1}, f"{where}: section 'model'"
    )
    # every field spelled out, so files that state a default and files that omit it compare equal
    model = {k: v for k, v in dataclasses.asdict(built).items() if k not in DERIVED_MODEL_FIELDS}
    # 4. training: caps come from the features; a file that sets them must agree
    training = dict(_section(data, "training", where))
    caps = {"max_clips": features.max_v_l, "max_tokens": features.max_q_l}
    for name, value in caps.items():
        if name in training and training[name] != value:
            raise DataValidationError(
                f"{where}: section 'training': {name}={short_repr(training[name])} contradicts "
                f"the features ({value}); remove it"
            )
    training.update(caps)
    train = config_from_dict(MomentTrainingConfig, training, f"{where}: section 'training'")
    return RunConfig(features, model, train)


def load_run_config(path: str | os.PathLike | None = None) -> RunConfig:
    """Read a run config file (default :data:`DEFAULT_CONFIG`).

    Raises:
        DataValidationError: unreadable file or bad content (names the file and field).
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    data = read_json_file(path, "QVHighlights run config", DataValidationError)
    return run_config_from_dict(data, str(path))


def with_overrides(
    config: RunConfig,
    video_features: str | None = None,
    epochs: int | None = None,
    device: str | None = None,
    num_workers: int | None = None,
    progress: bool | None = None,
) -> RunConfig:
    """The config with the command line's choices (None keeps the config's value).

    Raises:
        DataValidationError: a bad value (e.g. an unknown ``video_features``).
    """
    features = config.features
    if video_features is not None:
        features = replace(features, video_features=video_features)
    changes = {"epochs": epochs, "device": device, "num_workers": num_workers}
    changes["progress"] = progress
    training = replace(config.training, **{k: v for k, v in changes.items() if v is not None})
    return RunConfig(features, config.model, training)


def differences(stored: RunConfig, requested: RunConfig) -> list[str]:
    """``section.field: stored -> requested`` for every result-changing field that differs.

    Fields of :data:`RUNTIME_FIELDS` are left out (a resumed run may use another device or
    extend its epochs).
    """
    old, new = stored.to_dict(), requested.to_dict()
    out = []
    for section in SECTIONS:
        for name in sorted(set(old[section]) | set(new[section])):
            if section == "training" and name in RUNTIME_FIELDS:
                continue
            a, b = old[section].get(name), new[section].get(name)
            if a != b:
                out.append(f"{section}.{name}: {short_repr(a)} -> {short_repr(b)}")
    return out
