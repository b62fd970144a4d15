"""moto's server with each request handled atomically.

`moto_server` serves requests on parallel threads, and its S3 conditional writes
(`If-None-Match: *`, `If-Match`) check and then write without a lock, so two racing PUTs can
both succeed, which real S3 never allows. Serialising requests restores S3's semantics for the
tests of concurrent workers. SQS requests (JSON protocol, `X-Amz-Target: AmazonSQS.*`) are
left out of the lock: a long-poll ReceiveMessage waits inside moto for up to 20 s, and holding
the lock meanwhile would stall every other request (a worker's visibility heartbeat among
them), which real SQS never does. Usage: python moto_server.py HOST PORT
"""
import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

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
