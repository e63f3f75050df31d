"""The full COREBA model, its baseline, and the configuration that selects every ablation.

Pipeline (COREBA Sec. 3): projections -> balance tokens (eq. 1) -> encoder -> saliency
encoder (eq. 7) -> DAB-DETR moment decoder. The encoder is chosen by ``CorebaConfig.mode``:

* ``"rec"``: RAM with ONE shared CFC block applied ``n_recurrent`` times (REC_N, Algorithm 1);
* ``"mod"``: ``n_recurrent`` separate CFC blocks (MOD_N ablation, no weight sharing);
* ``"baseline"``: QD-DETR's stacked text-to-video cross-attention (``n_baseline_layers``).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, fields, replace

import torch
from torch import nn

from course_lib.alignment.balance import BalanceTokens
from course_lib.alignment.baseline_encoder import T2VEncoder
from course_lib.alignment.fused_attention import explicit_attention
from course_lib.alignment.heads import (
    MomentDecoder,
    SaliencyEncoder,
    clip_positions,
    sine_embedding,
)
from course_lib.alignment.projection import FeatureProjection
from course_lib.alignment.ram import RecurrentAlignment
from course_lib.errors import DataValidationError

MODES = ("rec", "mod", "baseline")


@dataclass(frozen=True)
class CorebaConfig:
    """Every architectural hyper-parameter of COREBA and its ablations.

    Attributes:
        d_v, d_t: input widths of video clip and text token features.
        d: model width; n_heads: attention heads; dim_feedforward: FFN width.
        dropout: transformer dropout; input_dropout: dropout inside the projections.
        n_proj_layers: layers of each projection MLP (3 in COREBA).
        n_balance_tokens: ``L_b`` balance tokens (eq. 1); 0 disables them.
        mode: ``"rec"`` (REC_N), ``"mod"`` (MOD_N) or ``"baseline"`` (QD-DETR encoder).
        n_recurrent: turns ``N_r`` of RAM (rec/mod).
        use_tv_block: keep the TV-block in CFC; use_fine_alignment: keep eq. 5's second VT pass.
        n_baseline_layers: T2V layers of the baseline encoder.
        n_saliency_layers: saliency encoder layers; n_decoder_layers: decoder layers.
        n_queries: moment queries ``N_q``; max_clips: longest video accepted (in clips).
    """

    d_v: int = 512
    d_t: int = 512
    d: int = 256
    n_heads: int = 8
    dim_feedforward: int = 1024
    dropout: float = 0.1
    input_dropout: float = 0.5
    n_proj_layers: int = 3
    n_balance_tokens: int = 7
    mode: str = "rec"
    n_recurrent: int = 3
    use_tv_block: bool = True
    use_fine_alignment: bool = True
    n_baseline_layers: int = 2
    n_saliency_layers: int = 2
    n_decoder_layers: int = 2
    n_queries: int = 10
    max_clips: int = 75

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise DataValidationError(f"CorebaConfig.mode={self.mode!r} is not one of {MODES}")
        if self.d % self.n_heads or self.d % 4:
            raise DataValidationError(
                f"CorebaConfig.d={self.d} must be divisible by n_heads={self.n_heads} and by 4"
            )
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise DataValidationError(f"CorebaConfig.{f.name}={value} must be >= 0")
        if self.n_recurrent < 1 or self.n_queries < 1 or self.n_decoder_layers < 1:
            raise DataValidationError(
                "CorebaConfig.n_recurrent, n_queries and n_decoder_layers must be >= 1"
            )


ABLATIONS = ("baseline", "+BAT", "+CFC", "+RAM")


def ablation_config(name: str, **overrides) -> CorebaConfig:
    """Configs of COREBA's component ablation; each row changes ONE thing from the previous.

    ``baseline`` (QD-DETR encoder) -> ``+BAT`` (+ balance tokens) -> ``+CFC`` (CFC block
    instead of the T2V encoder, one turn) -> ``+RAM`` (3 recurrent turns = full COREBA).

    Args:
        name: one of :data:`ABLATIONS`.
        **overrides: other config fields (sizes, d_v, ...).
    """
    presets = {
        "baseline": dict(mode="baseline", n_balance_tokens=0, n_recurrent=1),
        "+BAT": dict(mode="baseline", n_balance_tokens=7, n_recurrent=1),
        "+CFC": dict(mode="rec", n_balance_tokens=7, n_recurrent=1),
        "+RAM": dict(mode="rec", n_balance_tokens=7, n_recurrent=3),
    }
    if name not in presets:
        raise DataValidationError(f"unknown ablation {name!r}; choose one of {ABLATIONS}")
    return replace(CorebaConfig(**overrides), **presets[name])


class CorebaModel(nn.Module):
    """COREBA (or its baseline) for joint moment retrieval and highlight detection.

    Mask convention: ``True`` = real clip / word.
    """

    def __init__(self, config: CorebaConfig) -> None:
        super().__init__()
        c = self.config = config
        self.video_proj = FeatureProjection(c.d_v, c.d, c.input_dropout, c.n_proj_layers)
        self.text_proj = FeatureProjection(c.d_t, c.d, c.input_dropout, c.n_proj_layers)
        self.balance = BalanceTokens(c.n_balance_tokens, c.d)
        sizes = dict(d=c.d, n_heads=c.n_heads, dim_feedforward=c.dim_feedforward, dropout=c.dropout)
        if c.mode == "baseline":
            self.encoder: nn.Module = T2VEncoder(c.n_baseline_layers, **sizes)
        else:
            self.encoder = RecurrentAlignment(
                c.n_recurrent,
                share_weights=c.mode == "rec",
                use_tv_block=c.use_tv_block,
                use_fine_alignment=c.use_fine_alignment,
                **sizes,
            )
        self.saliency_encoder = SaliencyEncoder(n_layers=c.n_saliency_layers, **sizes)
        self.decoder = MomentDecoder(n_layers=c.n_decoder_layers, n_queries=c.n_queries, **sizes)

    def _check_inputs(
        self,
        video: torch.Tensor,
        video_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
    ) -> None:
        """Raise :class:`DataValidationError` naming the bad argument."""
        c = self.config
        for name, x, width in (("video_feats", video, c.d_v), ("text_feats", text, c.d_t)):
            if x.ndim != 3 or x.shape[-1] != width:
                raise DataValidationError(f"{name} must be (B, N, {width}), got {tuple(x.shape)}")
        for name, m, x in (("video_mask", video_mask, video), ("text_mask", text_mask, text)):
            if m.dtype != torch.bool or m.shape != x.shape[:2]:
                raise DataValidationError(
                    f"{name} must be bool of shape {tuple(x.shape[:2])}, got {m.dtype} "
                    f"{tuple(m.shape)}"
                )
            empty = (~m.any(dim=1)).nonzero().flatten().tolist()
            if empty:
                raise DataValidationError(f"{name} has no real position in batch rows {empty}")
        if video.shape[1] > c.max_clips:
            raise DataValidationError(
                f"video_feats has {video.shape[1]} clips > CorebaConfig.max_clips={c.max_clips}"
            )

    def encode(
        self,
        video_feats: torch.Tensor,
        video_mask: torch.Tensor,
        text_feats: torch.Tensor,
        text_mask: torch.Tensor,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Projections, balance tokens (eq. 1) and the encoder (RAM or baseline).

        Args:
            video_feats, video_mask, text_feats, text_mask: as in :meth:`forward`.
            need_weights: return the encoder's attention weights (explicit softmax path); the
                default False runs the fused kernel (training's negative pairs call this).

        Returns:
            aligned video (B, T, d), balanced text (B, L + L_b, d), its mask, and the encoder's
            attention weights (per turn / layer, dicts of (B, H, Lq, Lk); empty dicts when
            ``need_weights`` is False).
        """
        video = self.video_proj(video_feats, video_mask)
        text = self.text_proj(text_feats, text_mask)
        text, text_mask = self.balance(text, text_mask)
        video, text, attentions = self.encoder(video, video_mask, text, text_mask, need_weights)
        return video, text, text_mask, attentions

    def forward(
        self,
        video_feats: torch.Tensor,
        video_mask: torch.Tensor,
        text_feats: torch.Tensor,
        text_mask: torch.Tensor,
        return_attention: bool = False,
    ) -> dict:
        """Predict moments and per-clip saliency.

        Args:
            video_feats: (B, T, d_v) clip features; video_mask: (B, T) bool, True = real clip.
            text_feats: (B, L, d_t) token features; text_mask: (B, L) bool, True = real word.
            return_attention: also return ``"attention"`` = {"encoder": per-turn dicts,
                "decoder": per-layer cross-attention (B, H, Nq, T)}; the whole pass then takes
                the explicit softmax path, so maps and outputs are exactly the explicit model's.
                Without it every attention runs the fused kernel
                (:mod:`~course_lib.alignment.fused_attention`).

        Returns:
            ``{"pred_spans": (B, Nq, 2) (center, width) in (0, 1), "pred_logits": (B, Nq, 2)
            (class 0 = foreground, 1 = background), "saliency_scores": (B, T) (0 at padded
            clips), "aux_outputs": [{"pred_spans", "pred_logits"} for every earlier decoder
            layer]}``; the top level is the last decoder layer.
        """
        self._check_inputs(video_feats, video_mask, text_feats, text_mask)
        # attention maps asked for: the whole pass explicit, else every attention fused
        with explicit_attention() if return_attention else nullcontext():
            video, _, _, enc_att = self.encode(
                video_feats, video_mask, text_feats, text_mask, need_weights=return_attention
            )
            pos = sine_embedding(clip_positions(video_mask)[..., None], self.config.d)
            pos = pos.masked_fill(~video_mask[..., None], 0.0)
            memory, saliency = self.saliency_encoder(video, video_mask, pos)
            layers = self.decoder(memory, video_mask, pos, need_weights=return_attention)
        keys = ("pred_spans", "pred_logits")
        out = {k: layers[-1][k] for k in keys}
        out["saliency_scores"] = saliency
        out["aux_outputs"] = [{k: layer[k] for k in keys} for layer in layers[:-1]]
        if return_attention:
            dec_att = [layer["cross_attention"] for layer in layers]
            out["attention"] = {"encoder": enc_att, "decoder": dec_att}
        return out


def build_model(config: CorebaConfig | None = None, **overrides) -> CorebaModel:
    """Build COREBA / MOD_N / the baseline from a config (fields can be overridden).

    Example: ``build_model(CorebaConfig(d_v=2816, d_t=512), mode="mod")``.
    """
    config = replace(config or CorebaConfig(), **overrides)
    return CorebaModel(config)


@torch.no_grad()
def attention_to_balance_tokens(
    model: CorebaModel,
    video: torch.Tensor,
    vmask: torch.Tensor | None,
    text: torch.Tensor,
    tmask: torch.Tensor | None,
    turn: int = 0,
    stage: str = "vt_coarse",
) -> torch.Tensor:
    """Head-averaged attention of the VT-block for one video/query pair (notebook demo).

    Args:
        model: a :class:`CorebaModel` (any mode; for the baseline, ``turn`` is the layer).
        video: (T, d_v) or (1, T, d_v) clip features; vmask: (T,) / (1, T) or None (all real).
        text: (L, d_t) or (1, L, d_t) token features; tmask: (L,) / (1, L) or None.
        turn: recurrent turn (0-based).
        stage: ``"vt_coarse"`` (eq. 2) or ``"vt_fine"`` (eq. 5).

    Returns:
        (T, L + L_b) attention map; columns L .. L+L_b-1 are the balance tokens, rows sum to 1
        over real columns, padded words get 0.
    """
    if video.ndim == 2:
        video, text = video[None], text[None]
        vmask = None if vmask is None else vmask[None]
        tmask = None if tmask is None else tmask[None]
    if video.shape[0] != 1:
        raise DataValidationError(f"attention_to_balance_tokens takes one video, got {video.shape}")
    vmask = (
        torch.ones(video.shape[:2], dtype=torch.bool, device=video.device)
        if vmask is None
        else vmask
    )
    tmask = (
        torch.ones(text.shape[:2], dtype=torch.bool, device=text.device) if tmask is None else tmask
    )
    was_training = model.training
    model.eval()
    try:
        model._check_inputs(video, vmask, text, tmask)
        *_, attentions = model.encode(video, vmask, text, tmask, need_weights=True)
    finally:
        model.train(was_training)
    if not 0 <= turn < len(attentions) or stage not in attentions[turn]:
        raise DataValidationError(
            f"no attention {stage!r} at turn {turn}: the encoder has {len(attentions)} turns "
            f"with {sorted(attentions[0])}"
        )
    return attentions[turn][stage][0].mean(dim=0)
