"""A hand-written Python peer doing the same job as firehose-replay on a gzip NDJSON object:
gunzip -> lines -> json.loads -> sha256 row id -> dumps -> file. For comparison only."""
import gzip
import hashlib
import json
import sys

src, dst = sys.argv[1], sys.argv[2]
with open(src, "rb") as f:
    etag = hashlib.md5(f.read()).hexdigest()
with gzip.open(src, "rt", encoding="utf-8") as inp, open(dst, "w", encoding="utf-8") as out:
    for ordinal, line in enumerate(l for l in inp if l.strip()):
        rec = json.loads(line)
        rec["_row_id"] = hashlib.sha256(f"bench/{src}/{etag}/{ordinal}".encode()).hexdigest()[:32]
        out.write(json.dumps(rec, separators=(",", ":")))
        out.write("\n")
