"""A clip-level visual tower: one embedding (and patch tokens) per 2-s clip from k frames.

CLIP on one frame sees *which* objects are on screen, not *what they do*. A video tower reads the
``k`` frames of a clip together. Two designs, one interface:

* **early fusion** (``fusion="early"``): the ``k`` frames and, optionally, their ``k - 1``
  differences ``x_{j+1} - x_j`` are stacked along the channel axis and cut into patches by one
  convolution, so every patch token sees how its pixels change over the clip (the idea of
  early-fusion video networks). A ViT then runs over ``[CLS; patches]``:

      z_0 = [c; Conv_p(concat(x_1..x_k, x_2 - x_1, .., x_k - x_{k-1}))] + E_pos,
      z_l = TransformerLayer(z_{l-1}),  e = LN(z_L[0]) W,  p_i = LN(z_L[i]) W.

* **late fusion** (``fusion="late"``): a ViT encodes each frame alone, and a small temporal
  transformer runs over the ``k`` frame embeddings (CLIP4Clip's "seqTransf", which SPR uses over
  CLIP frame features); the clip embedding is the mean of its outputs and the patch tokens are
  the frames' patch tokens averaged over time.

Both return the clip embedding ``e`` (B, D) from :meth:`VideoTower.forward`, so the tower can
replace an open_clip model's ``visual`` module (``model.encode_image`` then encodes clips), and
``(e, p)`` with per-clip patch tokens (B, P, D) from :meth:`VideoTower.forward_tokens` for
UCoFiA's patch-word level.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FUSIONS = ("early", "late")
#: open_clip's (OpenAI CLIP's) per-channel image normalisation.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VideoTowerConfig:
    """Architecture of the clip-level visual tower.

    Attributes:
        frames: frames per clip (k >= 2; the clip's differences need two).
        image_size: frame side in pixels (square frames).
        patch_size: patch side in pixels; ``(image_size / patch_size)^2`` patch tokens.
        width: transformer width; layers, heads, mlp_ratio: the ViT's depth, heads, MLP size.
        embed_dim: output dimension (the text tower's).
        fusion: ``"early"`` (frames + differences in the patch embedding) or ``"late"``
            (per-frame ViT + temporal transformer).
        differences: early fusion only: also stack the frame differences.
        temporal_layers: late fusion only: layers of the temporal transformer.
    """

    frames: int = 4
    image_size: int = 64
    patch_size: int = 8
    width: int = 128
    layers: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    embed_dim: int = 128
    fusion: str = "early"
    differences: bool = True
    temporal_layers: int = 2

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.frames < 2:
            raise ValueError(f"frames must be >= 2 (a clip's motion needs two), got {self.frames}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )

    @property
    def num_patches(self) -> int:
        """Patch tokens per clip."""
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        """Plain dict (json); ``VideoTowerConfig(**d)`` rebuilds it."""
        return dataclasses.asdict(self)


def _encoder(width: int, heads: int, mlp_ratio: float, layers: int) -> nn.TransformerEncoder:
    """A pre-norm transformer encoder (GELU MLP, no dropout), batch first."""
    layer = nn.TransformerEncoderLayer(
        width,
        heads,
        dim_feedforward=int(width * mlp_ratio),
        dropout=0.0,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def patchify_linear(images: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A stride-p, kernel-p convolution without bias as one matrix product: (N, C, H, W) -> (N, P, width).

    ``Conv2d(C, width, p, stride=p)`` applied to non-overlapping patches is a linear map of each
    flattened patch; cutting the patches with reshapes and multiplying once is the same function
    (row-major patch order, as ``Conv2d(...).flatten(2)``) and several times faster on a CPU.

    Args:
        images: (N, C, H, W), H and W multiples of p.
        weight: (width, C, p, p) filters.

    Returns:
        (N, (H / p) * (W / p), width) patch tokens.
    """
    n, c, h, w = images.shape
    p = weight.shape[-1]
    # 1. (N, C, H/p, p, W/p, p) -> (N, H/p, W/p, C, p, p): one row per patch, filter layout
    patches = images.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    # 2. every patch times the flattened filters
    return patches.reshape(n, (h // p) * (w // p), c * p * p) @ weight.reshape(len(weight), -1).T


def fold_differences(weight: torch.Tensor, frames: int) -> torch.Tensor:
    """Early-fusion filters over (frames, differences) folded into filters over the frames alone.

    The patch embedding is linear, so filters ``W_j`` on frame ``x_j`` and ``D_j`` on the
    difference ``x_{j+1} - x_j`` act on the frames as ``W_j + D_{j-1} - D_j`` (``D_{-1} = D_{k-1}
    = 0``): the same function with 3k input channels instead of 3(2k - 1), and no differences to
    compute.

    Args:
        weight: (width, 3k + 3(k - 1), p, p) filters, frames first, then differences.
        frames: k.

    Returns:
        (width, 3k, p, p) filters.
    """
    k = frames
    frame_w = weight[:, : 3 * k].unflatten(1, (k, 3))
    diff_w = weight[:, 3 * k :].unflatten(1, (k - 1, 3))
    zero = torch.zeros_like(diff_w[:, :1])
    # frame j gains +D_{j-1} (it ends difference j-1) and -D_j (it starts difference j)
    folded = frame_w + torch.cat([zero, diff_w], dim=1) - torch.cat([diff_w, zero], dim=1)
    return folded.flatten(1, 2)


class _PatchViT(nn.Module):
    """ViT over images with ``in_channels`` channels: returns normalised [CLS; patches] tokens."""

    def __init__(self, config: VideoTowerConfig, in_channels: int, layers: int) -> None:
        super().__init__()
        p, w = config.patch_size, config.width
        self.patch_embed = nn.Conv2d(in_channels, w, kernel_size=p, stride=p, bias=False)
        self.cls = nn.Parameter(torch.randn(w) * w**-0.5)
        self.pos = nn.Parameter(torch.randn(config.num_patches + 1, w) * w**-0.5)
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = _encoder(w, config.heads, config.mlp_ratio, layers)
        self.ln_post = nn.LayerNorm(w)

    def forward(self, images: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C, H, W) -> (N, 1 + P, width).

        Args:
            images: the input images.
            weight: patch-embedding filters to use instead of ``patch_embed.weight``
                (width, C, p, p), e.g. filters folded over frame differences.
        """
        weight = self.patch_embed.weight if weight is None else weight
        patches = patchify_linear(images, weight)  # (N, P, width)
        cls = self.cls.expand(len(patches), 1, -1)
        tokens = self.ln_pre(torch.cat([cls, patches], dim=1) + self.pos)
        return self.ln_post(self.transformer(tokens))


class VideoTower(nn.Module):
    """Clip-level visual tower (see the module docstring for the two fusions).

    Input: float (B, k, 3, H, W) frames normalised with :data:`CLIP_MEAN` / :data:`CLIP_STD`
    (:func:`preprocess_clips` makes them from uint8 (B, k, H, W, 3)).
    """

    def __init__(self, config: VideoTowerConfig) -> None:
        super().__init__()
        self.config = config
        if config.fusion == "early":
            channels = 3 * config.frames + (3 * (config.frames - 1) if config.differences else 0)
            self.vit = _PatchViT(config, channels, config.layers)
        else:
            self.vit = _PatchViT(config, 3, config.layers)
            self.time_pos = nn.Parameter(
                torch.randn(config.frames, config.width) * config.width**-0.5
            )
            self.temporal = _encoder(
                config.width, config.heads, config.mlp_ratio, config.temporal_layers
            )
        self.proj = nn.Parameter(torch.randn(config.width, config.embed_dim) * config.width**-0.5)

    @property
    def image_size(self) -> int:
        """Frame side in pixels (open_clip's image towers expose it; ClipEncoder reads it)."""
        return self.config.image_size

    def _check(self, clips: torch.Tensor) -> None:
        """Refuse input that is not (B, k, 3, H, W) with this tower's k and H = W."""
        c = self.config
        expected = (c.frames, 3, c.image_size, c.image_size)
        if clips.ndim != 5 or tuple(clips.shape[1:]) != expected:
            raise ValueError(
                f"video tower: expected clips of shape (B, {c.frames}, 3, {c.image_size}, "
                f"{c.image_size}), got {tuple(clips.shape)}"
            )
        if not torch.isfinite(clips).all():
            raise ValueError("video tower: clips contain NaN or infinite values")

    def forward_tokens(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip embeddings (B, D) and per-clip patch tokens (B, P, D), not normalised."""
        self._check(clips)
        b, k = clips.shape[:2]
        if self.config.fusion == "early":
            # 1. frames stacked along channels, one ViT pass per clip; the filters on the frame
            #    differences act through folded frame filters (the same linear map)
            weight = self.vit.patch_embed.weight
            if self.config.differences:
                weight = fold_differences(weight, k)
            tokens = self.vit(clips.flatten(1, 2), weight)
            return tokens[:, 0] @ self.proj, tokens[:, 1:] @ self.proj
        # 2. late fusion: one ViT pass per frame, then a temporal transformer over frame CLS tokens
        tokens = self.vit(clips.flatten(0, 1)).unflatten(0, (b, k))  # (B, k, 1 + P, width)
        frames = self.temporal(tokens[:, :, 0] + self.time_pos)  # (B, k, width)
        return frames.mean(1) @ self.proj, tokens[:, :, 1:].mean(1) @ self.proj

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Clip embeddings (B, D), not normalised (what open_clip's ``encode_image`` expects)."""
        return self.forward_tokens(clips)[0]


def preprocess_clips(clips: np.ndarray | torch.Tensor, frames: int) -> torch.Tensor:
    """uint8 (B, k, H, W, 3) clips -> float (B, k, 3, H, W) normalised as CLIP's images.

    Args:
        clips: the clips' frames, RGB, values 0-255.
        frames: the tower's k; a clip with another number of frames is refused.

    Returns:
        float32 tensor ready for :class:`VideoTower`.

    Raises:
        ValueError: wrong rank, wrong number of frames per clip, not 3 channels, or an empty batch.
    """
    x = torch.as_tensor(np.asarray(clips) if not isinstance(clips, torch.Tensor) else clips)
    if x.ndim != 5 or x.shape[1] != frames or x.shape[-1] != 3 or len(x) == 0:
        raise ValueError(
            f"clips must be uint8 (B >= 1, {frames}, H, W, 3) frames, got shape {tuple(x.shape)}"
        )
    x = x.permute(0, 1, 4, 2, 3).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 1, 3, 1, 1)
    return (x - mean) / std


def inflate_from_image_tower(tower: VideoTower, visual: nn.Module) -> VideoTower:
    """Initialise a video tower from a trained open_clip ViT image tower (I3D-style inflation).

    Every ViT weight is copied (class token, positions, layer norms, attention, MLPs, output
    projection). The patch embedding is inflated: early fusion gives each of the k frames the
    image tower's filters divided by k and the frame differences zero filters, so a clip of k
    identical frames embeds exactly as the image tower embeds that frame; late fusion uses the
    filters as they are. What differs is learned from there: the difference filters and the
    temporal transformer start from the image tower's knowledge of colours, shapes and scenes.

    Args:
        tower: the video tower (its width, depth, heads, patch and image size must match).
        visual: an open_clip ``VisionTransformer`` (``model.visual`` of a CLIP).

    Returns:
        ``tower``, changed in place.

    Raises:
        ValueError: the two towers' shapes differ (message names the first mismatching weight).
    """
    source = visual.state_dict()
    target = tower.vit.state_dict()
    # 1. the patch embedding, inflated over frames (early) or as is (late)
    conv = source["conv1.weight"]
    if tower.config.fusion == "early":
        k = tower.config.frames
        parts = [conv / k] * k
        if tower.config.differences:
            parts += [torch.zeros_like(conv)] * (k - 1)
        conv = torch.cat(parts, dim=1)
    mapping = {"patch_embed.weight": conv, "cls": source["class_embedding"]}
    mapping |= {"pos": source["positional_embedding"]}
    for name in ("ln_pre", "ln_post"):
        for leaf in ("weight", "bias"):
            mapping[f"{name}.{leaf}"] = source[f"{name}.{leaf}"]
    # 2. the transformer layers: open_clip's names -> torch's TransformerEncoderLayer names
    renames = {
        "ln_1": "norm1",
        "ln_2": "norm2",
        "attn.in_proj_weight": "self_attn.in_proj_weight",
        "attn.in_proj_bias": "self_attn.in_proj_bias",
        "attn.out_proj": "self_attn.out_proj",
        "mlp.c_fc": "linear1",
        "mlp.c_proj": "linear2",
    }
    for key, value in source.items():
        if key.startswith("transformer.resblocks."):
            layer, rest = key.removeprefix("transformer.resblocks.").split(".", 1)
            for old, new in renames.items():
                if rest.startswith(old):
                    mapping[f"transformer.layers.{layer}.{new}{rest[len(old) :]}"] = value
    # 3. copy, refusing any shape mismatch or missing weight
    for key, value in target.items():
        if key not in mapping or mapping[key].shape != value.shape:
            found = tuple(mapping[key].shape) if key in mapping else "missing"
            raise ValueError(
                f"cannot inflate {key}: video tower {tuple(value.shape)}, image tower {found}"
            )
    tower.vit.load_state_dict(mapping, strict=True)
    with torch.no_grad():
        tower.proj.copy_(source["proj"])
    return tower


class FramePoolingTower(nn.Module):
    """Clip embeddings from any image tower: encode each of the k frames, normalise, average.

    The "mean of frame features" video embedding of CLIP4Clip (its ``meanP``: frame features are
    L2-normalised, then averaged; ``e = mean_j f(x_j) / ||f(x_j)||``) and of UCoFiA. It gives clip features
    for real videos from a pretrained open_clip image tower (one embedding per 2-s clip from its
    k frames) and is the frame-CLIP reference the video tower is measured against.

    Args:
        visual: an open_clip image tower (``model.visual``): (N, 3, H, W) -> (N, D).
        frames: k, frames per clip.
    """

    def __init__(self, visual: nn.Module, frames: int) -> None:
        super().__init__()
        self.visual = visual
        self.frames = int(frames)

    @property
    def image_size(self) -> int:
        """Frame side in pixels: the image tower's."""
        return self.visual.image_size

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """float (B, k, 3, H, W) -> (B, D): the mean of the k unit-length frame embeddings."""
        if clips.ndim != 5 or clips.shape[1] != self.frames:
            raise ValueError(
                f"frame pooling: expected clips of shape (B, {self.frames}, 3, H, W), "
                f"got {tuple(clips.shape)}"
            )
        # 1. every frame alone through the image tower, (B, k, D)
        frames = self.visual(clips.flatten(0, 1)).unflatten(0, clips.shape[:2])
        # 2. unit length per frame, then the mean over the clip's frames
        return F.normalize(frames, dim=-1).mean(1)


# ----------------------------------------------------------------------------- checkpoints
def save_video_text_model(
    model: nn.Module, path: str | os.PathLike, text_model_name: str, info: dict | None = None
) -> str:
    """Save a video-text model (open_clip text tower + :class:`VideoTower`) as fp16 safetensors.

    The header records the open_clip architecture of the text side (``text_model_name`` and its
    registered config), the
    tower's :class:`VideoTowerConfig` and ``info`` (json), so :func:`load_video_text_model`
    rebuilds the model without any other file; a ``.sha256`` manifest is written next to it.

    Returns:
        The file's SHA256.
    """
    import open_clip

    from course_lib.clip.checkpoint import save_state_dict

    tower = model.visual
    if not isinstance(tower, VideoTower):
        raise TypeError(f"model.visual must be a VideoTower, got {type(tower).__name__}")
    metadata = {
        "model_name": text_model_name,
        "model_config": json.dumps(open_clip.get_model_config(text_model_name)),
        "video_tower": json.dumps(tower.config.to_dict()),
        "info": json.dumps(info or {}),
    }
    return save_state_dict(model.state_dict(), path, metadata)


def load_video_text_model(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Load a checkpoint written by :func:`save_video_text_model` (SHA256-verified).

    Returns:
        ``(model, meta)``: the open_clip model in eval mode with its ``visual`` a
        :class:`VideoTower`, and the header (``model_name``, ``video_tower``, ``info``).

    Raises:
        CheckpointError: missing file or manifest, hash mismatch, or a header or weights that do
            not describe a video-text model (a header field that is missing, not a JSON object
            or nested too deeply is named with the file).
    """
    from course_lib.clip.checkpoint import load_state_dict
    from course_lib.clip.encoder import create_random_model
    from course_lib.clip.tiny_config import register_config
    from course_lib.datasets.safe_read import cut_text
    from course_lib.errors import CheckpointError

    # 1. the verified tensors and header; the header's JSON fields, each checked on its own
    state, meta = load_state_dict(path)
    tower_fields = _header_object(meta, "video_tower", path)
    model_config = _header_object(meta, "model_config", path)
    if "model_name" not in meta:
        raise CheckpointError(f"checkpoint {path}: header field 'model_name' is missing")
    # 2. the architecture they describe
    try:
        tower_config = VideoTowerConfig(**tower_fields)
        name = register_config(str(meta["model_name"]), model_config)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path}: header does not describe a video-text model ({cut_text(str(error))})"
        ) from error
    model = create_random_model(name)
    model.visual = VideoTower(tower_config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"checkpoint {path} does not fit {name} + video tower: {error}"
        ) from error
    return model.eval(), meta


def _header_object(meta: dict[str, str], key: str, path: str | os.PathLike) -> dict:
    """A JSON-object field of a video-text checkpoint's safetensors header, parsed safely.

    Args:
        meta: the header's string metadata.
        key: the field (``"video_tower"``, ``"model_config"``).
        path: the checkpoint, for messages.

    Returns:
        The parsed object.

    Raises:
        CheckpointError: the field is missing, not JSON, nested too deeply (``RecursionError``
            underneath), a value Python refuses, or not a JSON object; names the file and field.
    """
    from course_lib.datasets.safe_read import check_json_type, parse_json
    from course_lib.errors import CheckpointError

    where = f"checkpoint {path}: header field {key!r}"
    if key not in meta:
        raise CheckpointError(f"{where} is missing")
    value = parse_json(meta[key], where, CheckpointError)
    return check_json_type(value, dict, where, CheckpointError)
