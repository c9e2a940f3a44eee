"""Storage: the job record (an RQ job, our fields in its meta), ids, index, lookup, admission, the resource."""
