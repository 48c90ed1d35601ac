"""Chunk partitions: dynamic, one key per PAI chunk (`chunk_0000` ...), registered by discovery."""

import dagster as dg

CHUNKS_PARTITION = "chunks"
chunks = dg.DynamicPartitionsDefinition(name=CHUNKS_PARTITION)
