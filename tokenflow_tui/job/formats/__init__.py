"""Input formats beside our own JSONL (DESIGN §2.2, `[job] input_format`): OpenAI Batch JSONL, Parquet, CSV, hf.

`detect` says which format a file is in, `reading` checks and reads one; this package imports neither,
so the job file's reader pays only for detection.
"""
