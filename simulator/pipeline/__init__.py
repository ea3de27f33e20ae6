"""Pipeline parallelism, shared by both engines: which layers each stage holds (split), the order of passes each
stage runs (schedules, pure data) and the closed forms of a pipelined step (bubble, in-flight micro-batches,
pipeline time)."""
