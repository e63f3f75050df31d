"""Corpus-scale video moment search (chapter 6: SPR, CFAN, video retrieval before localisation).

Modules:

* :mod:`~course_lib.corpus.segments` -- fixed-length segments and pooled segment embeddings.
* :mod:`~course_lib.corpus.index` -- :class:`SegmentIndex`, faiss Flat / IVF / IVFPQ / HNSW.
* :mod:`~course_lib.corpus.shards` -- :class:`ShardedSegmentIndex`, N shard indexes searched as one.
* :mod:`~course_lib.corpus.proposals` -- merge retrieved segments into moment proposals.
* :mod:`~course_lib.corpus.search` -- coarse-to-fine two-stage search with pluggable stages.

faiss is imported only when an index is created or loaded.
"""

from course_lib.corpus.index import (
    INDEX_KINDS,
    IndexConfig,
    SegmentIndex,
    UnsupportedIndexOperation,
    choose_nprobe,
    make_faiss_index,
    recall_at_k,
    set_search_params,
)
from course_lib.corpus.proposals import Proposal, merge_segments, proposals_frame
from course_lib.corpus.search import (
    CoarseToFineSearch,
    CorpusLocaliser,
    ProposalRefinementLocaliser,
    SegmentVideoScorer,
    combine_scores,
    exhaustive_search,
    fit_alpha,
    index_proposals,
    rank_candidates,
    to_vcmr,
)
from course_lib.corpus.segments import (
    SegmentTable,
    l2_normalize,
    pool_segments,
    segment_bounds,
    segment_videos,
)
from course_lib.corpus.shards import ShardedSegmentIndex

__all__ = [
    "INDEX_KINDS",
    "CoarseToFineSearch",
    "CorpusLocaliser",
    "IndexConfig",
    "Proposal",
    "ProposalRefinementLocaliser",
    "SegmentIndex",
    "SegmentTable",
    "SegmentVideoScorer",
    "ShardedSegmentIndex",
    "UnsupportedIndexOperation",
    "choose_nprobe",
    "combine_scores",
    "exhaustive_search",
    "fit_alpha",
    "index_proposals",
    "l2_normalize",
    "make_faiss_index",
    "merge_segments",
    "pool_segments",
    "proposals_frame",
    "rank_candidates",
    "recall_at_k",
    "segment_bounds",
    "segment_videos",
    "set_search_params",
    "to_vcmr",
]
