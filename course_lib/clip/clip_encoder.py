"""VideoClipEncoder: one embedding per 2-s clip from its k frames, with ClipEncoder's API.

A :class:`~course_lib.clip.encoder.ClipEncoder` embeds single frames; a :class:`VideoClipEncoder`
embeds *clips*, uint8 ``(B, k, H, W, 3)``, with a clip-level visual tower, and encodes queries
exactly as a ClipEncoder does (it holds one, :attr:`VideoClipEncoder.base`, for the text tower,
tokenizer, device, batching and frame preprocessing). Two ways to get one:

* :meth:`VideoClipEncoder.load` - a trained video-text checkpoint
  (:func:`~course_lib.clip.video_encoder.save_video_text_model`): the tower is a
  :class:`~course_lib.clip.video_encoder.VideoTower` that reads the k frames together;
* :meth:`VideoClipEncoder.frame_pooling` - any ClipEncoder (``ClipEncoder.pretrained("ViT-B-32")``
  for real video, ``ClipEncoder.tiny()`` on the toy world) whose image tower encodes each frame,
  followed by the temporal mean of
  :class:`~course_lib.clip.video_encoder.FramePoolingTower`: the parameter-free mean pooling
  ("meanP") of CLIP4Clip (Luo et al., 2022), which UCoFiA uses as its video embedding.

Both give L2-normalised clip embeddings (:meth:`~VideoClipEncoder.encode_clips`) and per-clip patch
tokens for UCoFiA's patch-word level (:meth:`~VideoClipEncoder.encode_clip_tokens`), so
:class:`~course_lib.clip.features.FeatureCache` computes clip features of toy ids and real files
with either one, through the same calls.

Bad input never reaches the model: a batch of clips must hold clips of exactly k RGB frames of
one size with finite values; anything else raises
:class:`~course_lib.errors.DataValidationError` naming the clip and the shapes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.clip.encoder import ClipEncoder
from course_lib.clip.video_encoder import FramePoolingTower, VideoTower
from course_lib.errors import DataValidationError

#: file name under ``data/`` of the committed video-text checkpoint (chapter 1)
VIDEO_CHECKPOINT = "video_clip.safetensors"
#: what :meth:`VideoClipEncoder.encode_clips` accepts: one array or a sequence of clips
Clips = np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]


class VideoClipEncoder:
    """Batched, no-grad, device-aware clip encoder with a ClipEncoder's text side.

    Args:
        base: the ClipEncoder over the same open_clip model: its text tower, tokenizer, device,
            batch size and frame preprocessing are used (for :meth:`frame_pooling`, the frame
            encoder itself).
        tower: the clip-level visual tower, float ``(B, k, 3, S, S)`` -> ``(B, D)``.
        pooling: how the tower makes a clip embedding, part of :attr:`identity`
            (e.g. ``"video-tower k=4 early"``, ``"frame-mean k=4"``).

    Attributes:
        frames_per_clip: k, frames per clip.
        name, weights_id, device, image_size, context_length, embed_dim: the base encoder's.

    Raises:
        ValueError: the tower's output dimension differs from the text tower's.
    """

    def __init__(
        self, base: ClipEncoder, tower: VideoTower | FramePoolingTower, pooling: str
    ) -> None:
        # 1. the text side, device and preprocessing come from the base encoder
        self.base = base
        self.tower = tower.to(base.device).eval()
        self.pooling = pooling
        self.frames_per_clip = _tower_frames(tower)
        for attr in ("name", "weights_id", "device", "image_size", "context_length", "embed_dim"):
            setattr(self, attr, getattr(base, attr))
        # 2. clip and text embeddings must live in one space
        config = getattr(tower, "config", None)
        if config is not None and config.embed_dim != base.embed_dim:
            raise ValueError(
                f"video tower embeds in {config.embed_dim} dimensions, the text tower in "
                f"{base.embed_dim}"
            )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs) -> VideoClipEncoder:
        """A trained video-text checkpoint (SHA256-verified) as a clip encoder.

        Args:
            path: a ``*.safetensors`` file written by
                :func:`~course_lib.clip.video_encoder.save_video_text_model`, its ``.sha256``
                manifest next to it.
            **kwargs: ``device``, ``batch_size`` (clips per forward pass), ``progress``.

        Returns:
            The encoder; its ``weights_id`` is the checkpoint's SHA256.

        Raises:
            CheckpointError: missing file or manifest, hash mismatch, not a video-text model.
        """
        import open_clip

        from course_lib.clip.checkpoint import read_manifest
        from course_lib.clip.video_encoder import load_video_text_model

        # 1. the model (hash verified against the manifest while loading)
        model, meta = load_video_text_model(path)
        name = str(meta["model_name"])
        # 2. the base encoder over the whole model; its visual module is the video tower
        base = ClipEncoder(
            model, open_clip.get_tokenizer(name), name, read_manifest(path), **kwargs
        )
        tower = base.model.visual
        return cls(base, tower, f"video-tower k={tower.config.frames} {tower.config.fusion}")

    @classmethod
    def committed(cls, path: str | os.PathLike | None = None, **kwargs) -> VideoClipEncoder:
        """The committed toy-world video-text encoder of chapter 1 (SHA256-verified).

        Args:
            path: checkpoint file; default ``data/video_clip.safetensors``.
            **kwargs: as :meth:`load`.

        Raises:
            CheckpointError: the file is missing (names the command that recreates it), or as
                :meth:`load`.
        """
        from course_lib.env import data_dir
        from course_lib.errors import CheckpointError

        path = Path(path) if path is not None else data_dir() / VIDEO_CHECKPOINT
        if not path.is_file():
            raise CheckpointError(
                f"video-text checkpoint {path} not found; recreate it with the command in "
                f"data/README.md (`python scripts/train_video_encoder.py ... --export {path}`)"
            )
        return cls.load(path, **kwargs)

    @classmethod
    def frame_pooling(cls, clip_encoder: ClipEncoder, frames: int) -> VideoClipEncoder:
        """Clip embeddings from a frame encoder: the mean of its k frame embeddings (CLIP4Clip).

        Each frame goes through ``clip_encoder``'s image tower; the clip embedding is the
        L2-normalised mean of the k unit-length frame embeddings
        (:class:`~course_lib.clip.video_encoder.FramePoolingTower`, CLIP4Clip's parameter-free
        mean pooling, which normalises each frame before the mean, as
        :class:`~course_lib.clip.features.FeatureCache` does with a frame encoder). Real videos get clip features from pretrained weights
        this way, e.g. ``VideoClipEncoder.frame_pooling(ClipEncoder.pretrained("ViT-B-32"), 4)``.

        Args:
            clip_encoder: any frame encoder; its model is shared, not copied or changed.
            frames: k >= 1, frames per clip.

        Returns:
            The encoder; it uses ``clip_encoder``'s device, batch size (clips per forward pass)
            and progress setting.

        Raises:
            ValueError: ``frames`` is below 1.
        """
        if int(frames) < 1:
            raise ValueError(f"frames per clip must be >= 1, got {frames}")
        tower = FramePoolingTower(clip_encoder.model.visual, int(frames))
        return cls(clip_encoder, tower, f"frame-mean k={int(frames)}")

    # ------------------------------------------------------------------ identity
    @property
    def identity(self) -> str:
        """Model, weights, image size and clip pooling: never equal to a frame encoder's."""
        return f"{self.base.identity}|{self.pooling}"

    #: first 16 hex digits of SHA256(identity): ClipEncoder's property, reading this identity
    identity_hash = ClipEncoder.identity_hash

    @property
    def batch_size(self) -> int:
        """Clips per forward pass (the base encoder's ``batch_size``)."""
        return self.base.batch_size

    @property
    def num_patches(self) -> int:
        """Patch tokens per clip in :meth:`encode_clip_tokens` (no CLS token)."""
        if isinstance(self.tower, VideoTower):
            return self.tower.config.num_patches
        return self.base.num_patches - 1

    def __repr__(self) -> str:
        return f"VideoClipEncoder({self.identity!r}, device={self.device!r}, dim={self.embed_dim})"

    # ------------------------------------------------------------------ text: the base's
    @property
    def tokenizer(self):
        """The base's open_clip tokenizer (its ``decoder`` maps token ids back to words)."""
        return self.base.tokenizer

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Validated token ids (Q, context_length): :meth:`ClipEncoder.tokenize`."""
        return self.base.tokenize(texts)

    def encode_text(self, texts: str | Sequence[str]) -> torch.Tensor:
        """(Q, D) L2-normalised text embeddings: :meth:`ClipEncoder.encode_text`."""
        return self.base.encode_text(texts)

    def encode_text_tokens(
        self, texts: str | Sequence[str], normalize: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens (Q, L, D), mask (Q, L))``: :meth:`ClipEncoder.encode_text_tokens`."""
        return self.base.encode_text_tokens(texts, normalize)

    def encode_word_embeddings(
        self, texts: str | Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Input word embeddings and mask: :meth:`ClipEncoder.encode_word_embeddings`."""
        return self.base.encode_word_embeddings(texts)

    # ------------------------------------------------------------------ clips
    def encode_clips(self, clips: Clips) -> torch.Tensor:
        """Clips -> (B, D) L2-normalised clip embeddings (float32, CPU).

        Args:
            clips: uint8 (0-255) or float (0-1) RGB frames, one array ``(B, k, H, W, 3)`` or a
                sequence of B clips ``(k, H, W, 3)``; frames of any size are resized and centre
                cropped as ClipEncoder's frames are.

        Returns:
            One embedding per clip, in input order.

        Raises:
            DataValidationError: see :func:`validate_clips`; or the model gave non-finite values.
        """
        batch = validate_clips(clips, self.frames_per_clip)

        def run(sl: slice) -> torch.Tensor:
            return F.normalize(self.tower(self._preprocess(batch[sl])), dim=-1)

        return _finite(self.base._batched(len(batch), run, "clips"), "clip embeddings")

    def encode_clip_tokens(
        self, clips: Clips, normalize: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips -> clip embeddings and per-clip patch tokens (UCoFiA's patch level).

        For a video tower, its patch tokens; for frame pooling, each frame's projected patch
        tokens averaged over the clip's k frames (position by position).

        Args:
            clips: as for :meth:`encode_clips`.
            normalize: L2-normalise every patch token (default), so patch-word cosines are dot
                products.

        Returns:
            ``(emb (B, D), patches (B, P, D))``; ``emb`` is L2-normalised and equals
            :meth:`encode_clips`; ``P`` is :attr:`num_patches`.

        Raises:
            DataValidationError: as for :meth:`encode_clips`.
            NotImplementedError: frame pooling over an image tower without patch tokens.
        """
        batch = validate_clips(clips, self.frames_per_clip)
        # 1. raw [clip embedding; patch tokens] per clip, then normalise
        tokens = _finite(self._clip_tokens(batch), "clip tokens")
        patches = F.normalize(tokens[:, 1:], dim=-1) if normalize else tokens[:, 1:]
        return F.normalize(tokens[:, 0], dim=-1), patches

    def encode_frames(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Refused: this encoder embeds clips of k frames, not single frames.

        Code written for a frame encoder (e.g. a frame-by-frame index builder) stops
        here with a clear message instead of feeding single frames to a clip tower.

        Raises:
            TypeError: always.
        """
        raise TypeError(
            f"{self!r} encodes clips of {self.frames_per_clip} frames, not single frames: use "
            "encode_clips((B, k, H, W, 3)) or FeatureCache(encoder), which groups frames into clips"
        )

    # ------------------------------------------------------------------ helpers
    def _preprocess(self, clips: torch.Tensor) -> torch.Tensor:
        """(b, k, H, W, 3) frames -> (b, k, 3, S, S) model input on the device."""
        frames = self.base.preprocess(clips.flatten(0, 1))
        return frames.unflatten(0, tuple(clips.shape[:2])).to(self.device)

    def _clip_tokens(self, batch: torch.Tensor) -> torch.Tensor:
        """Validated clips -> (B, 1 + P, D) projected [clip embedding; patch tokens], raw."""
        if isinstance(self.tower, FramePoolingTower):
            # per-frame [CLS; patches] of the frame encoder, unit length, averaged over each
            # clip's k frames (CLIP4Clip's meanP)
            frames = self.base.encode_frame_tokens(batch.flatten(0, 1), normalize=True)
            return frames.unflatten(0, tuple(batch.shape[:2])).mean(1)

        def run(sl: slice) -> torch.Tensor:
            emb, patches = self.tower.forward_tokens(self._preprocess(batch[sl]))
            return torch.cat([emb[:, None], patches], dim=1)

        return self.base._batched(len(batch), run, "clip tokens")


# ----------------------------------------------------------------------------- validation
#: names of the committed toy-world encoders, for command-line options
COMMITTED_ENCODERS = ("video", "tiny")


def committed_encoder(name: str, **kwargs) -> VideoClipEncoder | ClipEncoder:
    """A committed toy-world encoder by name: ``"video"`` (chapter 1's video encoder, k frames
    per clip, :meth:`VideoClipEncoder.committed`) or ``"tiny"`` (the frame CLIP,
    :meth:`ClipEncoder.tiny`).

    Args:
        name: one of :data:`COMMITTED_ENCODERS`.
        **kwargs: ``device``, ``batch_size``, ``progress``.

    Raises:
        ValueError: an unknown name.
        CheckpointError: the checkpoint is missing or fails its checksum.
    """
    if name == "video":
        return VideoClipEncoder.committed(**kwargs)
    if name == "tiny":
        return ClipEncoder.tiny(**kwargs)
    raise ValueError(f"unknown committed encoder {name!r}; expected one of {COMMITTED_ENCODERS}")


def validate_clips(clips: Clips, frames: int) -> torch.Tensor:
    """Check a batch of clips and return it as one ``(B, k, H, W, 3)`` tensor.

    Args:
        clips: one array ``(B, k, H, W, 3)`` or a sequence of B arrays ``(k, H, W, 3)``.
        frames: k, the frames every clip must have.

    Returns:
        The clips, uint8 or float as given (a sequence is stacked).

    Raises:
        DataValidationError: no clips; an array that is not 5-D; a clip that is empty, has fewer
            or more than k frames, is not ``(k, H, W, 3)``, has frames of another size than clip
            0's, is neither uint8 nor float, or holds NaN or infinite values. The message names
            the clip's index and its shape.
    """
    # 1. one array, or one tensor per clip
    if isinstance(clips, (np.ndarray, torch.Tensor)):
        batch = torch.as_tensor(clips)
        if batch.ndim != 5:
            raise DataValidationError(
                f"clips must have shape (B, {frames}, H, W, 3), got {tuple(batch.shape)}"
            )
        items = list(batch)
    else:
        batch, items = None, [_clip_tensor(i, clip) for i, clip in enumerate(clips)]
    if not items:
        raise DataValidationError(f"no clips given: expected (B >= 1, {frames}, H, W, 3) frames")
    # 2. every clip against k and clip 0's frame shape
    first = tuple(items[0].shape[1:])
    for i, clip in enumerate(items):
        problem = _clip_problem(clip, frames, first)
        if problem:
            raise DataValidationError(f"clip {i} {problem}")
    return batch if batch is not None else torch.stack(items)


def _clip_tensor(index: int, clip: np.ndarray | torch.Tensor) -> torch.Tensor:
    """One clip of a sequence as a tensor (a ragged list of frames is refused, naming it)."""
    if isinstance(clip, torch.Tensor):
        return clip
    try:
        return torch.as_tensor(np.asarray(clip))
    except (ValueError, TypeError) as error:
        raise DataValidationError(f"clip {index} is not an array of frames ({error})") from None


def _clip_problem(clip: torch.Tensor, frames: int, first: tuple[int, ...]) -> str | None:
    """What is wrong with one clip (words that follow ``"clip i "``), or None."""
    shape = tuple(clip.shape)
    if clip.numel() == 0 and (clip.ndim < 4 or len(clip) == 0):
        return f"is empty (shape {shape}); every clip needs {frames} frames (k, H, W, 3)"
    if clip.ndim != 4 or shape[-1] != 3 or 0 in shape:
        return f"has shape {shape}; a clip is ({frames}, H, W, 3) RGB frames"
    if shape[0] != frames:
        fewer = "fewer" if shape[0] < frames else "more"
        return f"has {shape[0]} frames of shape {shape[1:]}, {fewer} than k = {frames}"
    if shape[1:] != first:
        return f"has frames of shape {shape[1:]}, but clip 0's frames are {first}"
    if clip.dtype != torch.uint8 and not clip.is_floating_point():
        return f"has dtype {clip.dtype}; frames must be uint8 (0-255) or float (0-1)"
    if clip.is_floating_point() and not torch.isfinite(clip).all():
        return f"(shape {shape}) contains NaN or infinite values"
    return None


def _finite(values: torch.Tensor, what: str) -> torch.Tensor:
    """``values`` when all are finite, else DataValidationError naming the first bad clip."""
    bad = ~torch.isfinite(values.flatten(1)).all(dim=1)
    if bad.any():
        raise DataValidationError(
            f"the model gave non-finite {what} for clip {int(bad.nonzero()[0])} "
            f"(of {len(values)}); nothing is passed on"
        )
    return values


def _tower_frames(tower: nn.Module) -> int:
    """k of a clip tower: a VideoTower's ``config.frames`` or a FramePoolingTower's ``frames``."""
    if isinstance(tower, VideoTower):
        return int(tower.config.frames)
    if isinstance(tower, FramePoolingTower):
        return int(tower.frames)
    raise TypeError(
        f"tower must be a VideoTower or a FramePoolingTower, got {type(tower).__name__}"
    )
