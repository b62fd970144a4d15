"""A small Iceberg REST catalog for the tests: pyiceberg's SqlCatalog (SQLite) behind the REST
routes the Iceberg sink uses, requests parsed and answers built with pyiceberg's own pydantic
models (CreateTableRequest, CommitTableRequest, TableResponse). Nothing here uses this project's
code. Run with .venv-iceberg's Python (scripts/test.sh installs it):

    iceberg_rest_server.py '{"db": "/abs/catalog.db", "warehouse": "/abs/wh" | "s3://b/p",
                             "s3": {"endpoint": URL}, "token": "secret"}'

It binds a free port on 127.0.0.1 and prints the port on its first line; requests are served
one at a time (SQLite, and the commit's check-then-write, stay atomic). With "token", a request
without `Authorization: Bearer <token>` is refused (401).
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import unquote, urlparse

from pyiceberg.catalog.rest import CreateTableRequest, TableResponse
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
from pyiceberg.table import CommitTableRequest
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from iceberg_tool import catalog  # noqa: E402  (the same SqlCatalog the readers open)

CFG = json.loads(sys.argv[1])
CAT = catalog(CFG)
ERRORS = {
    NoSuchTableError: 404, NoSuchNamespaceError: 404, TableAlreadyExistsError: 409,
    NamespaceAlreadyExistsError: 409, CommitFailedException: 409,
}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=None):
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def route(self):
        if CFG.get("token") and self.headers.get("Authorization") != f"Bearer {CFG['token']}":
            return self.answer(401, {"error": {"message": "not authorized", "type":
                                               "NotAuthorizedException", "code": 401}})
        parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
        try:
            self.dispatch(parts)
        except tuple(ERRORS) as e:
            code = ERRORS[type(e)]
            self.answer(code, {"error": {"message": str(e), "type": type(e).__name__,
                                         "code": code}})
        except Exception as e:  # a bug here, or a request this server does not know: say so
            self.answer(500, {"error": {"message": repr(e), "type": "ServerError", "code": 500}})

    def table_response(self, table):
        return TableResponse(
            metadata_location=table.metadata_location, metadata=table.metadata, config={}
        ).model_dump_json(by_alias=True, exclude_none=True).encode()

    def dispatch(self, parts):
        m = self.command
        if parts == ["v1", "config"]:
            return self.answer(200, {"defaults": {}, "overrides": {}})
        if parts[:2] != ["v1", "namespaces"]:
            return self.answer(404, {"error": {"message": self.path, "type": "NotFound",
                                               "code": 404}})
        rest = parts[2:]
        if not rest and m == "POST":
            req = json.loads(self.body())
            CAT.create_namespace(tuple(req["namespace"]), req.get("properties") or {})
            return self.answer(200, {"namespace": req["namespace"],
                                     "properties": req.get("properties") or {}})
        ns = tuple(rest[0].split("\x1f"))
        if len(rest) == 1:
            props = CAT.load_namespace_properties(ns)
            return self.answer(204 if m == "HEAD" else 200,
                               None if m == "HEAD" else {"namespace": list(ns), "properties": props})
        if rest[1:] == ["tables"] and m == "POST":
            body = json.loads(self.body())
            for optional in ("location", "partition-spec", "write-order"):
                body.setdefault(optional, None)
            req = CreateTableRequest.model_validate(body)
            table = CAT.create_table(
                ns + (req.name,), schema=req.table_schema, location=req.location,
                partition_spec=req.partition_spec or UNPARTITIONED_PARTITION_SPEC,
                sort_order=req.write_order or UNSORTED_SORT_ORDER, properties=req.properties)
            return self.answer(200, self.table_response(table))
        if len(rest) == 3 and rest[1] == "tables":
            ident = ns + (rest[2],)
            if m == "POST":
                req = CommitTableRequest.model_validate_json(self.body())
                table = CAT.load_table(ident)
                resp = CAT.commit_table(table, req.requirements, req.updates)
                return self.answer(200, resp.model_dump_json(by_alias=True).encode())
            table = CAT.load_table(ident)
            return self.answer(204, None) if m == "HEAD" else self.answer(
                200, self.table_response(table))
        return self.answer(404, {"error": {"message": self.path, "type": "NotFound", "code": 404}})

    do_GET = do_POST = do_HEAD = do_DELETE = route


server = HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
