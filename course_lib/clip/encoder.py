"""ClipEncoder: frames and queries into one embedding space with an open_clip model.

Three ways to get an encoder:

* :meth:`ClipEncoder.tiny` - the committed tiny CLIP trained on the toy world (offline, default);
* :meth:`ClipEncoder.pretrained` - real open_clip weights (e.g. ViT-B-32 / ``openai``), through
  open_clip's own download mechanism; offline it raises :class:`OfflineError` saying what to fetch;
* :meth:`ClipEncoder.from_config` - any registered architecture with random weights (tests).

Normalisation: pooled outputs (``encode_frames``, ``encode_text``) are L2-normalised as in CLIP.
Token outputs (``encode_frame_tokens``, ``encode_text_tokens``) are the projected tokens, each
L2-normalised by default (``normalize=False`` keeps raw norms), so cosine similarities between
patches and words (UCoFiA) are plain dot products. The CLS token (index 0) of
``encode_frame_tokens`` equals ``encode_frames``; the EOT token of ``encode_text_tokens`` equals
``encode_text``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.datasets.safe_read import short_repr
from course_lib.datasets.validate import text_problem
from course_lib.errors import CheckpointError, DataValidationError, OfflineError

TINY_CHECKPOINT = "tiny_clip.safetensors"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipEncoder:
    """Batched, no-grad, device-aware wrapper around an open_clip ``CLIP`` model.

    Args:
        model: an open_clip ``CLIP`` model (standard text tower, ViT or ResNet image tower).
        tokenizer: the matching open_clip tokenizer.
        name: architecture name (e.g. ``"ViT-B-32"``).
        weights_id: what the weights are (checkpoint SHA256, pretrained tag, ``random-seed0``).
        device: torch device string; default :func:`course_lib.env.pick_device`.
        batch_size: frames/queries per forward pass.
        progress: show a tqdm bar when an input needs more than one batch.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Callable,
        name: str,
        weights_id: str,
        device: str | None = None,
        batch_size: int = 64,
        progress: bool = True,
    ) -> None:
        from course_lib.env import pick_device

        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.name = name
        self.weights_id = weights_id
        self.batch_size = int(batch_size)
        self.progress = progress
        visual = model.visual
        size = visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.context_length = int(model.context_length)
        self.embed_dim = int(model.text_projection.shape[-1])
        cfg = getattr(visual, "preprocess_cfg", {}) or {}
        self._mean = torch.tensor(cfg.get("mean", OPENAI_MEAN)).view(1, 3, 1, 1)
        self._std = torch.tensor(cfg.get("std", OPENAI_STD)).view(1, 3, 1, 1)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_config(
        cls, name: str, pretrained: str | None = None, seed: int = 0, **kwargs
    ) -> ClipEncoder:
        """An encoder for a registered open_clip architecture.

        Args:
            name: architecture, e.g. ``"ViT-B-32"`` or the tiny config's name.
            pretrained: ``None`` for random weights (seeded by ``seed``, the global RNG is
                untouched); otherwise forwarded to :meth:`pretrained`.
            seed: seed of the random initialisation.
            **kwargs: ``device``, ``batch_size``, ``progress``.
        """
        import open_clip

        if pretrained is not None:
            return cls.pretrained(name, pretrained, **kwargs)
        from course_lib.clip.tiny_config import TINY_MODEL_NAME, register_tiny_config

        if name == TINY_MODEL_NAME:
            register_tiny_config()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = create_random_model(name)
        return cls(model, open_clip.get_tokenizer(name), name, f"random-seed{seed}", **kwargs)

    @classmethod
    def pretrained(
        cls, name: str = "ViT-B-32", weights: str = "openai", cache_dir: str | None = None, **kwargs
    ) -> ClipEncoder:
        """Real pretrained CLIP weights through open_clip's pretrained mechanism.

        Args:
            name: open_clip architecture name.
            weights: a pretrained tag (``open_clip.list_pretrained_tags_by_model(name)``) or the
                path of a local weights file (works offline).
            cache_dir: open_clip download cache (default: the Hugging Face cache).
            **kwargs: ``device``, ``batch_size``, ``progress``.

        Raises:
            OfflineError: the weights must be downloaded but the machine is offline.
            ValueError: unknown tag.
        """
        import open_clip

        from course_lib.env import can_download_weights

        # 1. a local file: no network needed, identity is the file's hash
        if os.path.isfile(weights):
            from course_lib.files import sha256_file

            model = open_clip.create_model(name, pretrained=weights)
            weights_id = sha256_file(weights)
            return cls(model, open_clip.get_tokenizer(name), name, weights_id, **kwargs)
        # 2. a tag: check it exists, then let open_clip download (or find it in its cache)
        tags = open_clip.list_pretrained_tags_by_model(name)
        if weights not in tags:
            raise ValueError(f"unknown pretrained weights {weights!r} for {name}; known: {tags}")
        if not can_download_weights():
            raise OfflineError(_offline_message(name, weights))
        try:
            model = open_clip.create_model(name, pretrained=weights, cache_dir=cache_dir)
        except RuntimeError as error:
            if "download" in str(error).lower():
                raise OfflineError(_offline_message(name, weights)) from error
            raise
        return cls(model, open_clip.get_tokenizer(name), name, f"{weights}", **kwargs)

    @classmethod
    def tiny(cls, path: str | os.PathLike | None = None, **kwargs) -> ClipEncoder:
        """The committed tiny CLIP (SHA256-verified), trained on toy-world frames and captions.

        Args:
            path: checkpoint file; default ``data/tiny_clip.safetensors``. Its manifest
                ``<stem>.sha256`` must sit next to it.
            **kwargs: ``device``, ``batch_size``, ``progress``.

        Raises:
            CheckpointError: missing file/manifest, or the SHA256 differs from the manifest.
        """
        import open_clip

        from course_lib.clip.checkpoint import load_state_dict, read_manifest
        from course_lib.clip.tiny_config import register_config
        from course_lib.env import data_dir

        path = Path(path) if path is not None else data_dir() / TINY_CHECKPOINT
        if not path.is_file():
            raise CheckpointError(
                f"tiny CLIP checkpoint {path} not found; recreate it with "
                "`python scripts/train_tiny_clip.py --out data/tiny_clip.safetensors`"
            )
        # 1. verify the hash, then build the architecture the checkpoint names, load strictly
        state, meta = load_state_dict(path)
        name = register_config(*tiny_architecture(meta, path))
        model = create_random_model(name)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise CheckpointError(f"checkpoint {path} does not fit {name}: {error}") from error
        weights_id = read_manifest(path)  # verified equal to the file's SHA256 above
        return cls(model, open_clip.get_tokenizer(name), name, weights_id, **kwargs)

    # ------------------------------------------------------------------ identity
    @property
    def identity(self) -> str:
        """A string naming model, weights and image size: use it in cache keys."""
        return f"{self.name}|{self.weights_id}|{self.image_size}px"

    @property
    def identity_hash(self) -> str:
        """First 16 hex digits of SHA256(identity): a safe directory name."""
        return hashlib.sha256(self.identity.encode("utf-8")).hexdigest()[:16]

    @property
    def num_patches(self) -> int:
        """Tokens per frame in :meth:`encode_frame_tokens` (CLS + grid patches)."""
        grid = self.model.visual.grid_size
        return 1 + int(grid[0]) * int(grid[1])

    def __repr__(self) -> str:
        return f"ClipEncoder({self.identity!r}, device={self.device!r}, dim={self.embed_dim})"

    # ------------------------------------------------------------------ preprocessing
    def preprocess(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) frames -> (N, 3, S, S) model input; see :func:`preprocess_frames`."""
        return preprocess_frames(frames, self.image_size, self._mean, self._std)

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Validate and tokenise queries -> (Q, context_length) token ids.

        Args:
            texts: one query or a sequence of queries.

        Returns:
            The token ids, one row per query.

        Raises:
            DataValidationError: no queries, or a query that is empty, whitespace only or not a
                string (a ``ValueError``; the message gives its index and never echoes more than
                200 characters of it).

        Warns:
            UserWarning: a query is longer than the context length and is truncated (the
                warning quotes at most 200 characters of it).
        """
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise DataValidationError("no queries given: texts is empty")
        for i, text in enumerate(texts):
            problem = text_problem(text)
            if problem:
                raise DataValidationError(f"query {i} is {problem}; a query needs words")
            encode = getattr(self.tokenizer, "encode", None)
            if encode is not None:
                n_tokens = len(encode(text)) + 2  # + start and end tokens
                if n_tokens > self.context_length:
                    warnings.warn(
                        f"query {i} {short_repr(text)} has {n_tokens} tokens and is truncated "
                        f"to the context length {self.context_length}",
                        UserWarning,
                        stacklevel=3,
                    )
        return self.tokenizer(texts)

    # ------------------------------------------------------------------ batching
    def _batched(self, n: int, fn: Callable[[slice], torch.Tensor], what: str) -> torch.Tensor:
        """Run ``fn`` over slices of ``batch_size`` under no-grad (+ AMP on CUDA); concat on CPU."""
        from tqdm.auto import tqdm

        starts = range(0, n, self.batch_size)
        show = self.progress and n > self.batch_size
        outputs = []
        amp = torch.autocast("cuda", dtype=torch.float16, enabled=self.device.startswith("cuda"))
        with torch.no_grad(), amp:
            for start in tqdm(starts, desc=f"encode {what}", disable=not show, leave=False):
                outputs.append(fn(slice(start, start + self.batch_size)).float().cpu())
        return torch.cat(outputs)

    # ------------------------------------------------------------------ frames
    def encode_frames(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) frames -> (N, D) L2-normalised image embeddings (float32, CPU)."""

        def run(sl: slice) -> torch.Tensor:
            x = self.preprocess(frames[sl]).to(self.device)
            return F.normalize(self.model.encode_image(x), dim=-1)

        return self._batched(len(frames), run, "frames")

    def encode_frame_tokens(
        self, frames: np.ndarray | torch.Tensor, normalize: bool = True
    ) -> torch.Tensor:
        """(N, H, W, 3) frames -> (N, P, D) projected tokens, CLS first then patches row-major.

        Args:
            frames: as for :meth:`encode_frames`.
            normalize: L2-normalise every token (default), so ``tokens[:, 0] == encode_frames``.
        """
        visual = self.model.visual
        if getattr(visual, "attn_pool", None) is not None or visual.pool_type != "tok":
            raise NotImplementedError(f"{self.name}: token output needs a CLS-pooled ViT")

        def run(sl: slice) -> torch.Tensor:
            x = self.preprocess(frames[sl]).to(self.device)
            # same path as VisionTransformer.forward, but project every token, not only CLS
            tokens = visual.transformer(visual._embeds(x))
            tokens = visual.ln_post(tokens) @ visual.proj
            return F.normalize(tokens, dim=-1) if normalize else tokens

        return self._batched(len(frames), run, "frame tokens")

    # ------------------------------------------------------------------ text
    def encode_text(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Queries -> (Q, D) L2-normalised text embeddings (float32, CPU)."""
        ids = self.tokenize(texts)

        def run(sl: slice) -> torch.Tensor:
            return F.normalize(self.model.encode_text(ids[sl].to(self.device)), dim=-1)

        return self._batched(len(ids), run, "queries")

    def encode_text_tokens(
        self, texts: str | Sequence[str], normalize: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries -> projected token features and their mask.

        Args:
            texts: one query or a list of queries.
            normalize: L2-normalise every real token (default); padding rows are zero.

        Returns:
            ``(tokens (Q, L, D), mask (Q, L) bool)`` with ``L = context_length``; ``mask`` is True
            for real tokens (start token, words, end token). The end token equals ``encode_text``.
        """
        ids = self.tokenize(texts)
        mask = ids != 0  # open_clip pads with id 0
        model = self.model

        def run(sl: slice) -> torch.Tensor:
            text = ids[sl].to(self.device)
            # same path as CLIP.encode_text, but project every token instead of pooling
            cast = model.transformer.get_cast_dtype()
            x = model.token_embedding(text).to(cast) + model.positional_embedding.to(cast)
            x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
            proj = model.text_projection
            x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
            return F.normalize(x, dim=-1) if normalize else x

        tokens = self._batched(len(ids), run, "query tokens")
        return tokens * mask[..., None], mask

    def encode_word_embeddings(
        self, texts: str | Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries -> the text tower's *input* word embeddings (no position, no context) and mask.

        The lexical layer of CLIP's text tower: one learned vector per token id, before the
        transformer mixes the words. A text tower trained on captions that never use some words
        (the tiny CLIP's frame captions name colours, shapes and scenes, never actions) maps the
        sentences "the green cross spins" and "... grows" to nearly the same token features, yet
        its input embeddings of "spins" and "grows" still differ; a trained model can read them.

        Args:
            texts: one query or a list of queries.

        Returns:
            ``(embeddings (Q, L, W), mask (Q, L) bool)``: L2-normalised rows, zero at padding;
            ``W`` is the text tower's width; the mask is :meth:`encode_text_tokens`'.
        """
        ids = self.tokenize(texts)
        mask = ids != 0  # open_clip pads with id 0
        with torch.no_grad():
            words = F.normalize(self.model.token_embedding(ids.to(self.device)).float(), dim=-1)
        return words.cpu() * mask[..., None], mask


class _NoRandomInitWarning(logging.Filter):
    """Drop open_clip's "No pretrained weights loaded" notice (random init is intended here)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


def tiny_architecture(meta: dict[str, str], path: str | os.PathLike) -> tuple[str, dict]:
    """Name and open_clip config of the tiny architecture a checkpoint was trained with.

    The patch size comes from the checkpoint's ``train_config`` metadata (16 when absent, the
    first recipe); the resulting name must equal the checkpoint's ``model_name``.

    Raises:
        CheckpointError: the metadata is not a JSON object with a valid ``patch_size``, or it
            names another architecture.
    """
    from course_lib.clip.tiny_config import TINY_CONFIG, tiny_variant

    try:
        recorded = json.loads(meta.get("train_config", "{}"))
        patch = int(recorded.get("patch_size", TINY_CONFIG["vision_cfg"]["patch_size"]))
        name, config = tiny_variant(patch)
    except (ValueError, TypeError, AttributeError, RecursionError) as error:
        raise CheckpointError(
            f"checkpoint {path}: metadata 'train_config' does not name a tiny architecture "
            f"({str(error)[:200]})"
        ) from None
    if meta.get("model_name", name) != name:
        raise CheckpointError(
            f"checkpoint {path} names model {meta['model_name']!r}, expected {name!r} "
            f"for patch size {patch}"
        )
    return name, config


def create_random_model(name: str) -> torch.nn.Module:
    """``open_clip.create_model(name, pretrained=None)`` without the random-init log notice."""
    import open_clip

    quiet = _NoRandomInitWarning()
    logging.getLogger().addFilter(quiet)
    try:
        return open_clip.create_model(name, pretrained=None)
    finally:
        logging.getLogger().removeFilter(quiet)


def preprocess_frames(
    frames: np.ndarray | torch.Tensor,
    image_size: int,
    mean: Sequence[float] | torch.Tensor = OPENAI_MEAN,
    std: Sequence[float] | torch.Tensor = OPENAI_STD,
) -> torch.Tensor:
    """(N, H, W, 3) uint8 [0, 255] or float [0, 1] frames -> (N, 3, S, S) normalised floats.

    Frames are resized so the short side is ``S = image_size`` (bicubic, antialiased), centre
    cropped to ``S x S`` and normalised with ``mean``/``std``, as in CLIP's preprocessing.
    """
    x = torch.as_tensor(frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames must have shape (N, H, W, 3), got {tuple(x.shape)}")
    # 1. to float in [0, 1]
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    elif x.is_floating_point():
        if x.numel() and (x.min() < -1e-3 or x.max() > 1.0 + 1e-3):
            raise ValueError("float frames must lie in [0, 1]; pass uint8 for 0..255 values")
        x = x.float()
    else:
        raise ValueError(f"frames must be uint8 or float, got dtype {x.dtype}")
    x = x.permute(0, 3, 1, 2)
    # 2. resize the short side, centre crop
    h, w = x.shape[-2:]
    if (h, w) != (image_size, image_size):
        scale = image_size / min(h, w)
        new_hw = (max(image_size, round(h * scale)), max(image_size, round(w * scale)))
        x = F.interpolate(x, size=new_hw, mode="bicubic", antialias=True, align_corners=False)
        top, left = (new_hw[0] - image_size) // 2, (new_hw[1] - image_size) // 2
        x = x[:, :, top : top + image_size, left : left + image_size].clamp(0.0, 1.0)
    # 3. normalise
    mean = torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def _offline_message(name: str, weights: str) -> str:
    """What to do when pretrained weights cannot be downloaded."""
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(name, weights)
    source = cfg.get("hf_hub") or cfg.get("url") or "the open_clip model hub"
    return (
        f"pretrained weights {name}/{weights} are not available offline (source: {source}). "
        "Run once on a connected machine (open_clip caches the download), or download the file "
        f"by hand and pass ClipEncoder.pretrained({name!r}, weights='/path/to/weights.bin'); "
        "offline, ClipEncoder.tiny() works with the committed toy-world checkpoint."
    )
