"""Chunk partitions (dynamic, one key per PAI chunk: `chunk_0000` ...) and the concurrency pools of heavy assets."""

import dagster as dg

CHUNKS_PARTITION = "chunks"
chunks = dg.DynamicPartitionsDefinition(name=CHUNKS_PARTITION)

# Concurrency pools: limits hold across all runs (deploy/dagster.yaml gives each pool a default of
# 1; raise one with `dagster instance concurrency set <pool> <n>` on a bigger machine).
POOL_DOWNLOAD = "flywheel_download"  # raw_chunks: GBs per chunk from the hub; the hub rate-limits
POOL_DECODE = "flywheel_decode"  # chunk_index, webdataset_shards: video decode, GBs of memory each
POOL_ACCELERATOR = "flywheel_accelerator"  # train_field_agent, navsim_eval: one GPU, one job on it
