"""The job domain: how an LLM job is stored in Redis as an RQ job, found, and shown.

The RQ job is the one record; our fields live in `job.meta`.
"""
