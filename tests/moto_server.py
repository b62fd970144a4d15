"""moto's server with each request handled atomically.

`moto_server` serves requests on parallel threads, and its S3 conditional writes
(`If-None-Match: *`, `If-Match`) check and then write without a lock, so two racing PUTs can
both succeed, which real S3 never allows. Serialising requests restores S3's semantics for the
tests of concurrent workers. SQS requests (JSON protocol, `X-Amz-Target: AmazonSQS.*`) are
left out of the lock: a long-poll ReceiveMessage waits inside moto for up to 20 s, and holding
the lock meanwhile would stall every other request (a worker's visibility heartbeat among
them), which real SQS never does. Usage: python moto_server.py HOST PORT
"""
import json
import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.s3tables.responses import S3TablesResponse

# moto 5.2.5's S3 Tables answers differ from the API in ways the AWS SDK for Rust refuses (the
# whole answer then fails to parse): GetTable's `managedByService` is a boolean where the API has
# a string naming the managing service (absent for a table of one's own), and
# UpdateTableMetadataLocation's answer names `tableArn` and a bare `namespace` string where the
# API has `tableARN` and a list. Answer as S3 Tables does.
def _answer_as_s3_tables(method, fix):
    original = getattr(S3TablesResponse, method)

    def fixed(self):
        status, headers, body = original(self)
        answer = json.loads(body)
        fix(answer)
        return status, headers, json.dumps(answer)

    setattr(S3TablesResponse, method, fixed)


def _get_table(t):
    if isinstance(t.get("managedByService"), bool):
        del t["managedByService"]


def _update_table_metadata_location(t):
    if "tableArn" in t:
        t["tableARN"] = t.pop("tableArn")
    if isinstance(t.get("namespace"), str):
        t["namespace"] = [t["namespace"]]


_answer_as_s3_tables("get_table", _get_table)
_answer_as_s3_tables("update_table_metadata_location", _update_table_metadata_location)

host, port = sys.argv[1], int(sys.argv[2])
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def atomic(environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("AmazonSQS."):
        return [b"".join(app(environ, start_response))]
    with lock:
        # Materialise the body inside the lock: the whole request is one atomic step.
        return [b"".join(app(environ, start_response))]


run_simple(host, port, atomic, threaded=True, use_reloader=False, request_handler=MotoRequestHandler)
