"""Every training hyper-parameter of COREBA / QD-DETR in one dataclass.

Defaults follow QD-DETR's QVHighlights recipe (Moon et al., CVPR 2023, Sec. 4.2 and its
``qd_detr/config.py``), which COREBA (Sec. 4.2) inherits: AdamW with lr 1e-4 and weight decay
1e-4, gradient-norm clipping at 0.1, batch 32, 200 epochs, Hungarian costs
``10 * L1 + 1 * gIoU + 4 * class`` and loss weights ``span 10, gIoU 1, label 4 (background
coefficient 0.1), saliency 1`` with margin 0.2 (Moment-DETR Sec. 4.2), rank-aware contrastive and
negative-pair losses weight 1 (QD-DETR Sec. 3.3, COREBA eq. 8-11).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, TypeVar

from course_lib.datasets.safe_read import short_repr
from course_lib.errors import CourseError, DataValidationError
from course_lib.timeline import CLIP_LEN

ConfigT = TypeVar("ConfigT")

# score used to pick the best checkpoint: the sum of these brief metrics
DEFAULT_BEST_METRICS = ("MR-full-mAP", "HL-min-VeryGood-mAP")


@dataclass(frozen=True)
class MomentTrainingConfig:
    """Optimisation, matching, loss and evaluation hyper-parameters.

    Attributes:
        epochs: training epochs (QD-DETR: 200); batch_size: clips-query pairs per step (32).
        lr, weight_decay: AdamW (1e-4, 1e-4); grad_clip: max gradient L2 norm (0.1; 0 = off).
        lr_drop: StepLR period in epochs (QD-DETR: 400, i.e. never within 200 epochs);
        lr_gamma: StepLR factor.
        seed: seed of python / numpy / torch (:func:`course_lib.env.seed_everything`).
        cost_span, cost_giou, cost_class: Hungarian matching costs (10, 1, 4).
        w_span, w_giou, w_label: weights of span L1, 1 - gIoU and foreground CE (10, 1, 4).
        eos_coef: class weight of the background label (0.1).
        w_saliency_margin, saliency_margin, n_saliency_pairs: margin ranking loss (1, 0.2, 2).
        w_rank_contrastive, rank_tau: rank-aware contrastive loss (1, temperature 0.5).
        w_neg_pair: negative-pair loss (1); its mismatched pairs roll the queries in the batch.
        aux_loss: also apply the moment losses to every earlier decoder layer.
        max_clips, max_tokens: collate caps (75 clips = 150 s; 32 query tokens).
        clip_len: seconds per clip (2).
        max_windows: windows kept per query in a submission (10, as moment_detr's eval).
        best_metrics: brief metrics summed to pick the best checkpoint.
        device: torch device (None = :func:`course_lib.env.pick_device`).
        progress: show tqdm progress bars.
        num_workers: DataLoader workers (0 keeps everything in-process and reproducible).
        amp: mixed precision on CUDA (``torch.autocast``: bfloat16 where the GPU supports it,
            else float16 with a gradient scaler); ignored on other devices.
    """

    epochs: int = 200
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    lr_drop: int = 400
    lr_gamma: float = 0.1
    seed: int = 2018
    cost_span: float = 10.0
    cost_giou: float = 1.0
    cost_class: float = 4.0
    w_span: float = 10.0
    w_giou: float = 1.0
    w_label: float = 4.0
    eos_coef: float = 0.1
    w_saliency_margin: float = 1.0
    saliency_margin: float = 0.2
    n_saliency_pairs: int = 2
    w_rank_contrastive: float = 1.0
    rank_tau: float = 0.5
    w_neg_pair: float = 1.0
    aux_loss: bool = True
    max_clips: int = 75
    max_tokens: int = 32
    clip_len: float = CLIP_LEN
    max_windows: int = 10
    best_metrics: tuple[str, ...] = DEFAULT_BEST_METRICS
    device: str | None = None
    progress: bool = True
    num_workers: int = 0
    amp: bool = False

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "lr", "lr_drop", "max_clips", "max_tokens", "clip_len")
        for name in positive:
            if not getattr(self, name) > 0:
                raise DataValidationError(
                    f"MomentTrainingConfig.{name}={getattr(self, name)} must be > 0"
                )
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise DataValidationError(f"MomentTrainingConfig.{f.name}={value} must be >= 0")
        if self.max_windows < 1 or self.n_saliency_pairs < 1:
            raise DataValidationError(
                "MomentTrainingConfig.max_windows and n_saliency_pairs must be >= 1"
            )
        if not self.best_metrics:
            raise DataValidationError(
                "MomentTrainingConfig.best_metrics must name at least one metric"
            )
        # json round trips give lists: keep the field hashable and comparable
        object.__setattr__(self, "best_metrics", tuple(self.best_metrics))

    def to_dict(self) -> dict:
        """Plain-python dict (json-serialisable); :meth:`from_dict` rebuilds it."""
        out = asdict(self)
        out["best_metrics"] = list(self.best_metrics)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "training config") -> MomentTrainingConfig:
        """Rebuild a config from :meth:`to_dict`'s dict (e.g. a checkpoint's ``train_config``).

        Args:
            data: the dict.
            where: what holds it, for messages (``"<file>: field 'train_config'"``).

        Returns:
            The config.

        Raises:
            DataValidationError: not a dict, an unknown or missing field, or a bad value (names
                ``where`` and the field).
        """
        return config_from_dict(cls, data, where, DataValidationError)

    def loss_weights(self) -> dict[str, float]:
        """Weights of the named loss terms of :class:`~course_lib.training.criterion.SetCriterion`."""
        return {
            "span": self.w_span,
            "giou": self.w_giou,
            "label": self.w_label,
            "saliency_margin": self.w_saliency_margin,
            "rank_contrastive": self.w_rank_contrastive,
            "neg_pair": self.w_neg_pair,
        }


def config_from_dict(
    cls: type[ConfigT], data: Any, where: str, error: type[CourseError] = DataValidationError
) -> ConfigT:
    """Build the config dataclass ``cls`` from a dict read from a file, refusing what does not fit.

    Args:
        cls: a dataclass (``MomentTrainingConfig``, ``CorebaConfig`` ...).
        data: its fields as a dict (json objects give lists for tuples; ``cls`` converts them).
        where: what holds the dict, for messages (file and field).
        error: the exception type to raise.

    Returns:
        ``cls(**data)``.

    Raises:
        error: ``data`` is not a dict, has fields ``cls`` does not know (listed, with the known
            ones) or lacks required ones, or ``cls`` refuses a value (its message is kept).
    """
    if not isinstance(data, Mapping):
        raise error(f"{where}: expected a dict of {cls.__name__} fields, got {short_repr(data)}")
    known = {f.name: f for f in fields(cls) if f.init}
    unknown = sorted(str(name) for name in data if name not in known)
    if unknown:
        raise error(
            f"{where}: unknown {cls.__name__} field(s) {short_repr(unknown)} (known: "
            f"{', '.join(known)}); written by another version of course_lib?"
        )
    missing = [
        name
        for name, f in known.items()
        if name not in data and f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        raise error(f"{where}: missing {cls.__name__} field(s) {', '.join(missing)}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:  # DataValidationError is a ValueError
        raise error(f"{where}: bad {cls.__name__} value: {exc}") from None
