"""CLIP features for video moment search: open_clip wrapper, tiny toy-world CLIP, clip features.

Modules (one concept each):

* :mod:`~course_lib.clip.encoder` - :class:`ClipEncoder` (pretrained / tiny / random weights);
* :mod:`~course_lib.clip.clip_encoder` - :class:`VideoClipEncoder`, ClipEncoder's API for clips of
  k frames (a trained video tower, or any ClipEncoder's frames mean-pooled);
* :mod:`~course_lib.clip.tiny_config` - the tiny architecture, registered with open_clip;
* :mod:`~course_lib.clip.checkpoint` - SHA256-verified safetensors checkpoints;
* :mod:`~course_lib.clip.loss` - symmetric InfoNCE with a learnable temperature;
* :mod:`~course_lib.clip.frames` - where frames come from (toy id or video file) and when;
* :mod:`~course_lib.clip.features` - per-video 2-second clip features with a disk cache;
* :mod:`~course_lib.clip.zeroshot` - zero-shot classification and text-to-frame retrieval.

The tiny CLIP is trained on toy-world frames by :mod:`course_lib.experiments.ch01_tiny_clip`
(``python scripts/train_tiny_clip.py``).
"""

from course_lib.clip.checkpoint import load_state_dict, save_state_dict, verify_sha256
from course_lib.clip.clip_encoder import VideoClipEncoder
from course_lib.clip.encoder import ClipEncoder, preprocess_frames
from course_lib.clip.features import (
    FeatureCache,
    encode_video,
    pool_clip_features,
    video_features,
)
from course_lib.clip.frames import clip_timestamps, count_clips, frame_source, is_toy_vid
from course_lib.clip.loss import InfoNCELoss, symmetric_info_nce
from course_lib.clip.tiny_config import TINY_CONFIG, TINY_MODEL_NAME, register_tiny_config
from course_lib.clip.zeroshot import recall_at_k, zero_shot_classify

__all__ = [
    "TINY_CONFIG",
    "TINY_MODEL_NAME",
    "VideoClipEncoder",
    "ClipEncoder",
    "FeatureCache",
    "InfoNCELoss",
    "clip_timestamps",
    "count_clips",
    "encode_video",
    "frame_source",
    "is_toy_vid",
    "load_state_dict",
    "pool_clip_features",
    "preprocess_frames",
    "recall_at_k",
    "register_tiny_config",
    "save_state_dict",
    "symmetric_info_nce",
    "verify_sha256",
    "video_features",
    "zero_shot_classify",
]
