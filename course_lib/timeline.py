"""The clip grid that every stage shares.

QVHighlights (and every release the course reads) cuts videos into 2-second clips: clip ``i``
covers ``[i * CLIP_LEN, (i + 1) * CLIP_LEN)``. Features, moment records, saliency scores, segment
indexes and figures all use this grid, so the length is defined here once. The module imports
nothing, so light modules (the record validator, the toy world) can use it without torch.
"""

CLIP_LEN: float = 2.0
"""Length of one clip in seconds."""
