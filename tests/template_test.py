#!/usr/bin/env python3
"""Checks of template.yaml (the SAM deployment) that cfn-lint does not make.

Plain Python 3 + PyYAML (scripts/test.sh installs both into .venv); run from anywhere:
    .venv/bin/python tests/template_test.py
When aws-sam-translator is importable (scripts/test.sh installs it too), the template is also
expanded the way CloudFormation's SAM transform expands it, and the IAM checks run again on the
result, so a policy SAM would add implicitly cannot slip through.

Each group of checks prints one line (-v: every check); a failure names what is wrong and where,
and the exit status is then 1.
"""

import copy
import json
import os
import re
import sys
from pathlib import Path

import yaml

TEMPLATE = Path(os.environ.get("FIREHOSE_REPLAY_TEMPLATE") or Path(__file__).resolve().parent.parent / "template.yaml")


# --- loading: a YAML loader that understands CloudFormation's short tags ---------------------


class CfnLoader(yaml.SafeLoader):
    pass


def _construct_tag(loader, tag_suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {"Fn::" + tag_suffix: value}


CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path=TEMPLATE):
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=CfnLoader)


# --- helpers ---------------------------------------------------------------------------------

FAILURES = []
PASSED = [0]
VERBOSE = "-v" in sys.argv


def check(ok, what, why=""):
    """Record one named check; `why` says what is wrong when it fails. Passes print with -v."""
    if ok:
        PASSED[0] += 1
        if VERBOSE:
            print(f"ok   {what}")
    else:
        print(f"FAIL {what}: {why}")
        FAILURES.append(what)
    return ok


def section(title, fn, *args):
    before, failed_before = PASSED[0], len(FAILURES)
    result = fn(*args)
    status = "FAILED" if len(FAILURES) > failed_before else "ok"
    print(f"{status:6} {title} ({PASSED[0] - before} checks passed)")
    return result


def as_list(v):
    return v if isinstance(v, list) else [v]


def branches(v):
    """The alternatives of a value: both sides of Fn::If (recursively), minus AWS::NoValue."""
    if isinstance(v, dict) and set(v) == {"Fn::If"}:
        _, yes, no = v["Fn::If"]
        return branches(yes) + branches(no)
    if v == {"Ref": "AWS::NoValue"}:
        return []
    return [v]


def literal_strings(v):
    """Every plain string a value can evaluate to at its top level (Sub templates included)."""
    out = []
    for b in branches(v):
        if isinstance(b, str):
            out.append(b)
        elif isinstance(b, dict) and "Fn::Sub" in b:
            sub = b["Fn::Sub"]
            out.append(sub if isinstance(sub, str) else sub[0])
        elif isinstance(b, dict) and "Fn::Join" in b:
            sep, parts = b["Fn::Join"]
            if isinstance(parts, list) and all(isinstance(p, str) for p in parts):
                out.append(sep.join(parts))
    return out


def resources_of(template, rtype):
    return {
        name: r
        for name, r in template.get("Resources", {}).items()
        if r.get("Type") == rtype
    }


def refers_to(value, resource):
    """Whether a value is !Ref resource or !GetAtt resource.X."""
    if isinstance(value, dict):
        if value.get("Ref") == resource:
            return True
        getatt = value.get("Fn::GetAtt")
        if isinstance(getatt, list) and getatt and getatt[0] == resource:
            return True
    return False


def check_ledger_grants(t):
    """The S3 ledger's grants only when it is used: PostgresSink keeps the ledger in the database."""
    role = resources_of(t, "AWS::IAM::Role").get("ReplayFunctionRole", {})
    raw = []
    for p in role.get("Properties", {}).get("Policies", []):
        raw.extend(as_list(p.get("PolicyDocument", {}).get("Statement", [])))
    for sid in ("LedgerMarkers", "ListLedgerPrefix"):
        wrapped = [s for s in raw if isinstance(s, dict) and set(s) == {"Fn::If"}
                   and any(isinstance(b, dict) and b.get("Sid") == sid for b in s["Fn::If"][1:])]
        check(len(wrapped) == 1 and wrapped[0]["Fn::If"][0] == "UsePostgres"
              and wrapped[0]["Fn::If"][1] == {"Ref": "AWS::NoValue"},
              f"{sid} only without PostgresSink", f"statement {wrapped!r}")
        check(not any(isinstance(s, dict) and s.get("Sid") == sid for s in raw),
              f"{sid} never granted unconditionally", "a plain statement grants it")
    env = (resources_of(t, "AWS::Serverless::Function").get("ReplayFunction", {})
           .get("Properties", {}).get("Environment", {}).get("Variables", {}))
    ledger = env.get("FIREHOSE_REPLAY_LEDGER")
    check(isinstance(ledger, dict) and ledger.get("Fn::If", [None, None])[:2] == ["UsePostgres", "postgres"],
          "FIREHOSE_REPLAY_LEDGER is postgres exactly when the S3 grants are dropped", f"{ledger!r}")
    rule = t.get("Rules", {}).get("LedgerOutsideTheNotifiedPrefix", {}).get("RuleCondition")
    check("PostgresSink" in json.dumps(rule),
          "the ledger-prefix rule does not bind a PostgresSink stack", f"RuleCondition {rule!r}")


def policy_documents(template):
    """(where, document) for every IAM policy document in the template."""
    docs = []
    for name, r in template.get("Resources", {}).items():
        rtype, props = r.get("Type"), r.get("Properties") or {}
        if rtype == "AWS::IAM::Role":
            for p in as_list(props.get("Policies", [])):
                for b in branches(p):
                    docs.append((f"{name} policy {b.get('PolicyName')}", b.get("PolicyDocument", {})))
        elif rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs.append((name, props.get("PolicyDocument", {})))
        elif rtype in (
            "AWS::SQS::QueuePolicy",
            "AWS::SNS::TopicPolicy",
            "AWS::S3::BucketPolicy",
            "AWS::KMS::Key",
        ):
            key = "KeyPolicy" if rtype == "AWS::KMS::Key" else "PolicyDocument"
            docs.append((name, props.get(key, {})))
        elif rtype == "AWS::Serverless::Function":
            for p in as_list(props.get("Policies", [])):
                if isinstance(p, dict) and "Statement" in p:
                    docs.append((f"{name} Policies", p))
    return docs


def statements(document):
    out = []
    for s in as_list(document.get("Statement", [])):
        out.extend(branches(s))
    return out


ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")

# Actions AWS authorises only on Resource "*" (no resource-level permissions): what Lambda needs
# to run a function in a VPC. A statement of nothing but these may name "*".
STAR_ONLY_ACTIONS = {"ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"}


def check_iam(template, label):
    """No "*" resource and no wildcard action in any statement of any policy."""
    docs = policy_documents(template)
    check(docs, f"{label}: the template has IAM policy documents", "none found")
    for where, doc in docs:
        for i, s in enumerate(statements(doc)):
            sid = s.get("Sid", f"statement {i}")
            here = f"{label}: {where} / {sid}"
            for forbidden in ("NotResource", "NotAction"):
                check(forbidden not in s, f"{here} has no {forbidden}", f"{forbidden} grants everything else")
            if s.get("Effect") != "Allow":
                continue
            resources = []
            for r in as_list(s.get("Resource", [])):
                resources.extend(branches(r))
            if "Principal" not in s:  # identity policies must name their resources
                check(resources, f"{here} names its resources", "no Resource")
            star_only = set(as_list(s.get("Action", []))) <= STAR_ONLY_ACTIONS
            for r in resources:
                for text in literal_strings(r):
                    check(
                        star_only or text.strip() not in ("*", "arn:*", "arn:${AWS::Partition}:*"),
                        f"{here} resource {text!r} is scoped (not '*')",
                        "a '*' resource grants the action on every resource in the account",
                    )
            for a in as_list(s.get("Action", [])):
                for text in literal_strings(a) or [str(a)]:
                    check(
                        bool(ACTION.match(text)),
                        f"{here} action {text!r} is a single named action",
                        "wildcards ('*', 's3:*', 's3:Get*') grant more than the function uses",
                    )


def only(d, what):
    check(len(d) == 1, f"exactly one {what}", f"found {sorted(d) or 'none'}")
    return next(iter(d.items())) if d else (None, {})


# --- the checks ------------------------------------------------------------------------------


def check_function(t):
    name, fn = only(resources_of(t, "AWS::Serverless::Function"), "AWS::Serverless::Function")
    props = fn.get("Properties", {})
    check(t.get("Transform") == "AWS::Serverless-2016-10-31", "Transform is AWS::Serverless-2016-10-31",
          f"got {t.get('Transform')!r}")
    check(props.get("Runtime") == "provided.al2023", "function runtime is provided.al2023",
          f"got {props.get('Runtime')!r}")
    check(props.get("Handler") == "bootstrap", "function handler is bootstrap", f"got {props.get('Handler')!r}")
    check(props.get("Architectures") == [{"Ref": "Architecture"}], "Architectures is [!Ref Architecture]",
          f"got {props.get('Architectures')!r}")
    arch = t.get("Parameters", {}).get("Architecture", {})
    check(arch.get("Default") == "arm64" and set(arch.get("AllowedValues", [])) == {"arm64", "x86_64"},
          "Architecture parameter: arm64 by default, x86_64 allowed", f"got {arch}")
    meta = fn.get("Metadata", {})
    check(meta.get("BuildMethod") == "rust-cargolambda", "function is built with rust-cargolambda",
          f"Metadata.BuildMethod is {meta.get('BuildMethod')!r}")
    check((meta.get("BuildProperties") or {}).get("Binary") == "firehose-replay",
          "BuildProperties.Binary is firehose-replay", f"got {meta.get('BuildProperties')!r}")
    for p in ("MemorySize", "Timeout"):
        param = t.get("Parameters", {}).get(p, {})
        check(props.get(p) == {"Ref": p} and "Default" in param and len(param.get("Description", "")) > 40,
              f"{p} is a parameter with a default and an explanation",
              f"property {props.get(p)!r}, parameter {param!r}")
    # The role is explicit and carries no managed policy: SAM's implicit SQS poller policy and
    # AWSLambdaSQSQueueExecutionRole use Resource "*".
    role = props.get("Role")
    check(isinstance(role, dict) and refers_to(role, "ReplayFunctionRole"),
          "function uses the template's own role (so SAM adds no implicit policies)", f"Role is {role!r}")
    check("Policies" not in props, "function declares no SAM Policies", "SAM policy templates hide their resources")
    for rname, r in resources_of(t, "AWS::IAM::Role").items():
        check(not r.get("Properties", {}).get("ManagedPolicyArns"), f"{rname} attaches no managed policy",
              f"ManagedPolicyArns {r['Properties'].get('ManagedPolicyArns')}")
    env = (props.get("Environment") or {}).get("Variables", {})
    for var in ("FIREHOSE_REPLAY_SINK", "FIREHOSE_REPLAY_LEDGER", "FIREHOSE_REPLAY_DEAD_LETTER",
                "FIREHOSE_REPLAY_ON_RECORD_ERROR", "FIREHOSE_REPLAY_LOG_LEVEL"):
        check(var in env, f"function sets {var}", f"environment has {sorted(env)}")
    check({"FIREHOSE_REPLAY_GCP_CREDENTIALS_SECRET_ARN", "FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON"} <= set(env),
          "function can be given GCP credentials (secret ARN or external_account JSON)",
          f"environment has {sorted(env)}")
    # Every variable the function is given must be one the binary reads: a misspelt or renamed
    # flag would otherwise be ignored silently in Lambda.
    source = "\n".join(p.read_text() for p in (Path(__file__).resolve().parent.parent / "src").rglob("*.rs"))
    known = set(re.findall(r'"(FIREHOSE_REPLAY_[A-Z0-9_]+)"', source))
    unknown = sorted(v for v in env if v.startswith("FIREHOSE_REPLAY_") and v not in known)
    check(not unknown, "every FIREHOSE_REPLAY_* variable the function sets is read by the binary",
          f"not read anywhere in src/: {unknown}")
    return name, props


def check_trigger(t, fn_props):
    queues = resources_of(t, "AWS::SQS::Queue")
    sqs_events = [e for e in (fn_props.get("Events") or {}).values() if e.get("Type") == "SQS"]
    check(len(sqs_events) == 1, "function has one SQS event source", f"found {len(sqs_events)}")
    if not sqs_events:
        return
    ev = sqs_events[0].get("Properties", {})
    check("ReportBatchItemFailures" in ev.get("FunctionResponseTypes", []),
          "SQS event source reports batch item failures",
          f"FunctionResponseTypes is {ev.get('FunctionResponseTypes')!r}")
    queue = ev.get("Queue", {})
    qname = queue.get("Fn::GetAtt", [None])[0] if isinstance(queue, dict) else None
    check(qname in queues, "SQS event source reads a queue of this template", f"Queue is {queue!r}")
    if qname not in queues:
        return
    qprops = queues[qname].get("Properties", {})
    redrive = qprops.get("RedrivePolicy") or {}
    dlq = redrive.get("deadLetterTargetArn")
    check(isinstance(dlq, dict) and dlq.get("Fn::GetAtt", [None])[0] in queues,
          f"{qname} redrives to a dead-letter queue of this template", f"RedrivePolicy is {redrive!r}")
    # Visibility timeout ≥ 6 × function timeout, for every allowed timeout.
    vis = qprops.get("VisibilityTimeout")
    timeout = t.get("Parameters", {}).get("Timeout", {})
    if isinstance(vis, dict) and "Fn::FindInMap" in vis:
        mapname, key, attr = vis["Fn::FindInMap"]
        table = t.get("Mappings", {}).get(mapname, {})
        allowed = timeout.get("AllowedValues", [])
        check(key == {"Ref": "Timeout"} and allowed, f"{qname} visibility timeout follows the Timeout parameter",
              f"looked up with {key!r}, Timeout allows {allowed!r}")
        for v in allowed:
            got = table.get(str(v), {}).get(attr)
            check(isinstance(got, int) and got >= 6 * int(v),
                  f"visibility timeout for a {v} s function is ≥ 6× ({got})",
                  f"{mapname}[{v}].{attr} = {got!r}, AWS asks for ≥ {6 * int(v)}")
    else:
        check(False, f"{qname} visibility timeout follows the Timeout parameter", f"VisibilityTimeout is {vis!r}")
    # S3 may send to it, from the source bucket of this account only.
    s3_statements = [
        s
        for r in resources_of(t, "AWS::SQS::QueuePolicy").values()
        if any(refers_to(q, qname) for q in r["Properties"].get("Queues", []))
        for s in statements(r["Properties"].get("PolicyDocument", {}))
        if (s.get("Principal") or {}).get("Service") == "s3.amazonaws.com"
    ]
    check(len(s3_statements) == 1, f"{qname} policy lets s3.amazonaws.com send", f"found {len(s3_statements)}")
    for s in s3_statements:
        cond = s.get("Condition", {})
        keys = {k for block in cond.values() for k in block}
        check(s.get("Action") in ("sqs:SendMessage", ["sqs:SendMessage"]), "S3 may only SendMessage",
              f"Action {s.get('Action')!r}")
        check({"aws:SourceArn", "aws:SourceAccount"} <= keys,
              "S3 statement is bound to the bucket (aws:SourceArn) and account (aws:SourceAccount)",
              f"conditions {cond!r}")


def check_failure_paths(t, fn_props):
    queues = resources_of(t, "AWS::SQS::Queue")
    on_failure = ((fn_props.get("EventInvokeConfig") or {}).get("DestinationConfig") or {}).get("OnFailure") or {}
    dest = on_failure.get("Destination")
    check(on_failure.get("Type") == "SQS" and isinstance(dest, dict) and dest.get("Fn::GetAtt", [None])[0] in queues,
          "asynchronous invocations have an SQS OnFailure destination in this template", f"OnFailure is {on_failure!r}")
    check("DeadLetterQueue" in queues, "the dead-letter queue for failed objects exists", f"queues: {sorted(queues)}")
    dl = t.get("Parameters", {}).get("DeadLetter", {})
    check(dl.get("Default") == "sqs" and re.fullmatch(dl.get("AllowedPattern", "^$"), "s3://bucket/prefix/"),
          "DeadLetter parameter: sqs by default, an s3:// prefix allowed", f"got {dl!r}")


def check_alarms(t, fn_name):
    alarms = resources_of(t, "AWS::CloudWatch::Alarm")

    def find(metric, namespace):
        return {n: a["Properties"] for n, a in alarms.items()
                if a["Properties"].get("MetricName") == metric and a["Properties"].get("Namespace") == namespace}

    depth = find("ApproximateNumberOfMessagesVisible", "AWS/SQS")
    watched = set()
    for name, a in depth.items():
        queue = [d["Value"].get("Fn::GetAtt", [None])[0] for d in a.get("Dimensions", [])
                 if d.get("Name") == "QueueName" and isinstance(d.get("Value"), dict)]
        watched.update(queue)
        check(a.get("Threshold") == 0 and a.get("ComparisonOperator") == "GreaterThanThreshold",
              f"{name} (depth of {queue}) fires at > 0",
              f"Threshold {a.get('Threshold')!r}, {a.get('ComparisonOperator')}")
    queues = resources_of(t, "AWS::SQS::Queue")
    notification_dlqs = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in queues.values()
        if (q.get("Properties") or {}).get("RedrivePolicy")
    }
    for q in sorted(notification_dlqs | {"DeadLetterQueue"}):
        check(q in watched, f"depth alarm on {q}", f"depth alarms watch {sorted(watched)}")
    errors = find("Errors", "AWS/Lambda")
    check(any(any(d.get("Name") == "FunctionName" and refers_to(d.get("Value"), fn_name) for d in a.get("Dimensions", []))
              and a.get("Threshold") == 0 for a in errors.values()),
          "Errors > 0 alarm on the function", f"Errors alarms: {errors}")
    lag = find("ObjectLagSeconds", "FirehoseReplay")
    check(any(any(d.get("Name") == "Function" and refers_to(d.get("Value"), fn_name) for d in a.get("Dimensions", []))
              and a.get("Threshold") == {"Ref": "ObjectLagThresholdSeconds"} for a in lag.values()),
          "object lag alarm: FirehoseReplay/ObjectLagSeconds, Function = the function, threshold a parameter",
          f"ObjectLagSeconds alarms: {lag}")
    check(t.get("Parameters", {}).get("ObjectLagThresholdSeconds", {}).get("Default") == 3600,
          "object lag threshold defaults to 3600 s", "see Parameters.ObjectLagThresholdSeconds")


def check_least_privilege(t):
    role = resources_of(t, "AWS::IAM::Role").get("ReplayFunctionRole", {})
    stmts = []
    for p in role.get("Properties", {}).get("Policies", []):
        stmts.extend(statements(p.get("PolicyDocument", {})))
    by_action = {}
    for s in stmts:
        if s.get("Effect") != "Allow":
            continue
        for a in as_list(s.get("Action", [])):
            by_action.setdefault(a, []).append(s)

    def resources(s):
        return [x for r in as_list(s.get("Resource", [])) for b in branches(r) for x in literal_strings(b)]

    get = [r for s in by_action.get("s3:GetObject", []) for r in resources(s)]
    source = "arn:${AWS::Partition}:s3:::${SourceBucket}/${SourcePrefix}*"
    check(source in get, "s3:GetObject on the source prefix", f"s3:GetObject resources {get}")
    warehouse = "arn:${AWS::Partition}:s3:::${IcebergWarehouseBucket}/${IcebergWarehousePrefix}/*"
    check(all(r in (source, warehouse) or r.endswith("/${LedgerPrefix}*") for r in get),
          "s3:GetObject on nothing but the source, ledger and Iceberg warehouse prefixes",
          f"s3:GetObject resources {get}")
    for s in by_action.get("s3:ListBucket", []):
        check("s3:prefix" in (s.get("Condition") or {}).get("StringLike", {}),
              f"s3:ListBucket ({s.get('Sid')}) is limited by an s3:prefix condition", f"Condition {s.get('Condition')!r}")
    for a in ("s3:PutObject", "s3:DeleteObject"):
        for s in by_action.get(a, []):
            for r in resources(s):
                check(r.endswith("*") and ("${LedgerPrefix}" in r or "${Location}" in r
                                           or r == warehouse),
                      f"{a} only under the ledger, dead-letter or Iceberg warehouse prefix ({r})",
                      "broader than a prefix")
    check(any(s.get("Sid") == "ReadGcpCredentialsSecret" for s in stmts),
          "secretsmanager:GetSecretValue on the one secret (when given)", "statement missing")
    for s in by_action.get("secretsmanager:GetSecretValue", []):
        check(s.get("Resource") in ({"Ref": "GcpCredentialsSecretArn"}, {"Ref": "PostgresSecretArn"}),
              "GetSecretValue names only the configured secret", f"Resource {s.get('Resource')!r}")
    check(any(s.get("Sid") == "ReadPostgresSecret" for s in stmts),
          "secretsmanager:GetSecretValue on the PostgreSQL password secret (when given)", "statement missing")
    for s in stmts:
        if any(str(a).startswith("ec2:") for a in as_list(s.get("Action", []))):
            check(set(as_list(s["Action"])) <= STAR_ONLY_ACTIONS or all(
                      ":network-interface/*" in r or ":subnet/*" in r or ":security-group/*" in r
                      for r in resources(s)),
                  f"{s.get('Sid')}: EC2 network-interface actions only on interfaces, subnets, groups",
                  f"Resource {s.get('Resource')!r}")


def check_iceberg_grants(t):
    """Iceberg: Glue grants on the one database and table, S3 on the warehouse prefix, S3 Tables
    on the one table bucket, each only when that catalog is chosen (creation only with auto)."""
    role = resources_of(t, "AWS::IAM::Role").get("ReplayFunctionRole", {})
    raw = []
    for p in role.get("Properties", {}).get("Policies", []):
        raw.extend(as_list(p.get("PolicyDocument", {}).get("Statement", [])))
    wanted = {
        "IcebergGlueTable": ("UseGlue", {"glue:GetDatabase", "glue:GetTable", "glue:UpdateTable"}),
        "IcebergGlueCreate": ("CreateGlueTable", {"glue:CreateDatabase", "glue:CreateTable"}),
        "IcebergWarehouseFiles": ("UseGlue", {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}),
        "ListIcebergWarehouse": ("UseGlue", {"s3:ListBucket"}),
        "IcebergS3TablesNamespace": ("UseS3Tables", {"s3tables:GetNamespace"}),
        "IcebergS3TablesTable": ("UseS3Tables", {
            "s3tables:GetTable", "s3tables:GetTableMetadataLocation",
            "s3tables:UpdateTableMetadataLocation", "s3tables:GetTableData", "s3tables:PutTableData"}),
        "IcebergS3TablesCreate": ("CreateS3TablesTable", {"s3tables:CreateNamespace", "s3tables:CreateTable"}),
    }
    for sid, (condition, actions) in wanted.items():
        wrapped = [s for s in raw if isinstance(s, dict) and set(s) == {"Fn::If"}
                   and isinstance(s["Fn::If"][1], dict) and s["Fn::If"][1].get("Sid") == sid]
        ok = len(wrapped) == 1 and wrapped[0]["Fn::If"][0] == condition \
            and wrapped[0]["Fn::If"][2] == {"Ref": "AWS::NoValue"}
        check(ok, f"{sid} only with {condition}", f"statements {wrapped!r}")
        if not ok:
            continue
        st = wrapped[0]["Fn::If"][1]
        check(set(as_list(st.get("Action"))) == actions, f"{sid} grants exactly {sorted(actions)}",
              f"Action {st.get('Action')!r}")
        text = json.dumps(st.get("Resource"))
        if sid.startswith("IcebergGlue"):
            check("database/${Db}" in text and "table/${Db}/${Table}" in text and "*" not in text,
                  f"{sid}: the one Glue database and table", f"Resource {text}")
        elif sid.startswith("IcebergS3Tables"):
            check("IcebergTableBucketArn" in text, f"{sid}: within the one table bucket", f"Resource {text}")
        elif sid == "ListIcebergWarehouse":
            check((st.get("Condition") or {}).get("StringLike", {}).get("s3:prefix")
                  == {"Fn::Sub": "${IcebergWarehousePrefix}/*"},
                  f"{sid}: listing under the warehouse prefix only", f"Condition {st.get('Condition')!r}")
        else:
            check("${IcebergWarehouseBucket}/${IcebergWarehousePrefix}/*" in text,
                  f"{sid}: under the warehouse prefix only", f"Resource {text}")
    env = (resources_of(t, "AWS::Serverless::Function").get("ReplayFunction", {})
           .get("Properties", {}).get("Environment", {}).get("Variables", {}))
    sink = json.dumps(env.get("FIREHOSE_REPLAY_SINK"))
    for form in ("iceberg:glue://?warehouse=s3://${IcebergWarehouseBucket}/${IcebergWarehousePrefix}#${IcebergTable}",
                 "iceberg:s3tables:${IcebergTableBucketArn}#${IcebergTable}"):
        check(form in sink, f"FIREHOSE_REPLAY_SINK is {form} for that catalog", f"{sink}")
    rules = json.dumps(t.get("Rules", {}))
    check("IcebergTable" in json.dumps(t.get("Rules", {}).get("OneSink")),
          "OneSink counts IcebergTable as a sink", "it does not")
    check("OneIcebergCatalog" in rules, "a rule asks for exactly one Iceberg catalog", "no such rule")


def check_state_machine(t):
    """The optional Distributed Map: off by default, the definition plan-map documents, and a
    role limited to the manifests, the results, the function and its own child executions."""
    params = t.get("Parameters", {})
    sm_param = params.get("StateMachine", {})
    check(sm_param.get("Default") == "false" and set(sm_param.get("AllowedValues", [])) == {"true", "false"},
          "StateMachine parameter: off by default", f"got {sm_param!r}")
    cond = t.get("Conditions", {}).get("UseStateMachine")
    check(cond == {"Fn::Equals": [{"Ref": "StateMachine"}, "true"]}, "UseStateMachine follows the parameter",
          f"got {cond!r}")
    machines = resources_of(t, "AWS::Serverless::StateMachine")
    name, sm = only(machines, "AWS::Serverless::StateMachine")
    role_r = resources_of(t, "AWS::IAM::Role").get("ReplayStateMachineRole", {})
    for rname, r in ((name, sm), ("ReplayStateMachineRole", role_r)):
        check(r.get("Condition") == "UseStateMachine", f"{rname} exists only with StateMachine=true",
              f"Condition {r.get('Condition')!r}")
    props = sm.get("Properties", {})
    check(refers_to(props.get("Role"), "ReplayStateMachineRole"), "state machine uses its own explicit role",
          f"Role {props.get('Role')!r}")
    check("Policies" not in props, "state machine declares no SAM Policies", "")
    subs = props.get("DefinitionSubstitutions", {})
    check(refers_to(subs.get("ReplayFunctionArn"), "ReplayFunction"), "${ReplayFunctionArn} is the function",
          f"substitutions {subs!r}")
    d = props.get("Definition", {})
    m = d.get("States", {}).get(d.get("StartAt"), {})
    check(m.get("Type") == "Map" and m.get("End") is True, "the start state is a Map that ends the run", f"{m!r}")
    proc = m.get("ItemProcessor", {})
    check(proc.get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED", "the Map is distributed",
          f"ProcessorConfig {proc.get('ProcessorConfig')!r}")
    reader = m.get("ItemReader", {})
    check(reader.get("Resource") == "arn:aws:states:::s3:getObject"
          and reader.get("ReaderConfig", {}).get("InputType") == "JSONL",
          "ItemReader: s3:getObject of a JSON Lines manifest", f"{reader!r}")
    batcher = m.get("ItemBatcher", {})
    check(0 < batcher.get("MaxInputBytesPerBatch", 0) <= 256 * 1024,
          "ItemBatcher input within Step Functions' 256 KiB", f"{batcher!r}")
    task = proc.get("States", {}).get(proc.get("StartAt"), {})
    check(task.get("Resource") == "arn:aws:states:::lambda:invoke"
          and task.get("Parameters", {}).get("FunctionName") == "${ReplayFunctionArn}",
          "each batch invokes the function", f"{task!r}")
    src = Path(__file__).resolve().parent.parent / "src"
    const = re.search(r'MAP_TRANSIENT_ERROR: &str = "([^"]+)"', (src / "trigger/map_result.rs").read_text())
    retry = task.get("Retry", [])
    check(const and retry and retry[0].get("ErrorEquals") == [const.group(1)],
          "the first Retry names the function's transient error (MAP_TRANSIENT_ERROR)",
          f"Retry {retry!r}, constant {const and const.group(1)!r}")
    writer = m.get("ResultWriter", {})
    check(writer.get("Resource") == "arn:aws:states:::s3:putObject", "ResultWriter writes to S3", f"{writer!r}")
    # Every execution-input field the definition reads is one plan-map prints.
    plan_map = (src / "plan_map.rs").read_text()
    paths = set(re.findall(r"\$\.([a-z_]+)", yaml.safe_dump(d)))
    missing = sorted(p for p in paths if f'"{p}"' not in plan_map)
    check(paths and not missing, "plan-map prints every input field the definition reads",
          f"fields {sorted(paths)}, not in src/plan_map.rs: {missing}")
    # The role: exactly what a Distributed Map over a manifest calling one function needs.
    stmts = [s for p in role_r.get("Properties", {}).get("Policies", [])
             for s in statements(p.get("PolicyDocument", {}))]
    actions = {a for s in stmts for a in as_list(s.get("Action", []))}
    want = {"lambda:InvokeFunction", "s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts",
            "s3:AbortMultipartUpload", "states:StartExecution", "states:DescribeExecution",
            "states:StopExecution", "states:RedriveExecution"}
    check(actions == want, "state machine role grants exactly the Distributed Map's actions",
          f"extra {sorted(actions - want)}, missing {sorted(want - actions)}")
    trust = statements(role_r.get("Properties", {}).get("AssumeRolePolicyDocument", {}))
    check(any((s.get("Principal") or {}).get("Service") == "states.amazonaws.com" for s in trust),
          "state machine role is assumed by Step Functions", f"{trust!r}")
    for s in stmts:
        res = [x for r in as_list(s.get("Resource", [])) for b in branches(r) for x in literal_strings(b) or [b]]
        for a in as_list(s.get("Action", [])):
            if a == "lambda:InvokeFunction":
                ok = all(refers_to(r, "ReplayFunction") or (isinstance(r, str) and r.startswith("${ReplayFunction.Arn}"))
                         for r in res)
                check(ok and res, "lambda:InvokeFunction on this function only", f"resources {res!r}")
            elif a.startswith("s3:"):
                ok = all(isinstance(r, str) and r.startswith("arn:${AWS::Partition}:s3:::${MapBucket}/${MapPrefix}")
                         and r.endswith("/*") for r in res)
                check(ok, f"{a} only under MapBucket/MapPrefix", f"resources {res!r}")
            elif a.startswith("states:"):
                ok = all(isinstance(r, str) and "${AWS::StackName}-replay" in r for r in res)
                check(ok, f"{a} only on this state machine and its executions", f"resources {res!r}")
    get = [r for s in stmts if "s3:GetObject" in as_list(s.get("Action", []))
           for r in as_list(s.get("Resource", [])) for r in literal_strings(r)]
    check(any(r.endswith("${MapPrefix}manifests/*") for r in get), "s3:GetObject on the manifests", f"{get!r}")
    check(props.get("Name") == {"Fn::Sub": "${AWS::StackName}-replay"},
          "the machine's name is the one its role's states: ARNs are built from", f"Name {props.get('Name')!r}")


def check_outputs(t):
    outputs = t.get("Outputs", {})
    for o in ("FunctionArn", "NotificationQueueArn", "NotificationQueueUrl", "NotificationDLQUrl", "DeadLetterQueueUrl"):
        check(o in outputs, f"output {o}", f"outputs are {sorted(outputs)}")


def expanded(t):
    """The template after the SAM transform, or None without aws-sam-translator."""
    try:
        from samtranslator.translator.transform import transform
        from samtranslator.yaml_helper import yaml_parse
    except ImportError:
        return None
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with open(TEMPLATE, encoding="utf-8") as f:
        sam = yaml_parse(f.read())
    for r in sam.get("Resources", {}).values():
        if r.get("Type") == "AWS::Serverless::Function":
            r["Properties"]["CodeUri"] = "s3://bucket/bootstrap.zip"  # what `sam package` puts there

    class NoManagedPolicies:
        def load(self):
            return {}

    return transform(sam, {"SourceBucket": "bucket", "SinkTable": "project.dataset.table"}, NoManagedPolicies())


def check_expanded(x):
    check(not any(r.get("Type", "").startswith("AWS::Serverless::") for r in x["Resources"].values()),
          "SAM transform: every resource expanded", "")
    check_iam(x, "after SAM transform")
    esm = resources_of(x, "AWS::Lambda::EventSourceMapping")
    check(any("ReportBatchItemFailures" in e["Properties"].get("FunctionResponseTypes", []) for e in esm.values()),
          "after SAM transform: the event source mapping reports batch item failures", f"mappings {esm}")
    roles = resources_of(x, "AWS::IAM::Role")
    check(set(roles) == {"ReplayFunctionRole", "ReplayStateMachineRole"},
          "after SAM transform: no role besides ReplayFunctionRole and ReplayStateMachineRole",
          f"roles {sorted(roles)}")


def check_dead_letter_locations(t):
    """A dead-letter prefix is required, and nothing may be written under the notified prefix."""
    params = t.get("Parameters", {})
    for name, also in (("DeadLetter", ["sqs"]), ("DeadLetterOverflow", [""])):
        pattern = re.compile(params.get(name, {}).get("AllowedPattern", "^$"))
        for value in ["s3://bucket/", "s3://bucket", "s3://bucket//", "s3://bucket/a*/"]:
            check(not pattern.search(value), f"{name} refuses {value!r}",
                  "a bare bucket grants s3:PutObject on all of it")
        for value in ["s3://bucket/dead-letters/", "s3://bucket/a/b/"] + also:
            check(bool(pattern.search(value)), f"{name} accepts {value!r}", f"pattern {pattern.pattern}")
    role = resources_of(t, "AWS::IAM::Role").get("ReplayFunctionRole", {})
    stmts = []
    for p in role.get("Properties", {}).get("Policies", []):
        stmts.extend(statements(p.get("PolicyDocument", {})))
    notified = "arn:${AWS::Partition}:s3:::${SourceBucket}/${SourcePrefix}*"
    denied = [s for s in stmts if s.get("Effect") == "Deny"
              and notified in [x for r in as_list(s.get("Resource", [])) for x in literal_strings(r)]]
    actions = {a for s in denied for a in as_list(s.get("Action", []))}
    check({"s3:PutObject", "s3:DeleteObject"} <= actions,
          "the role may never write or delete under the notified prefix (explicit Deny)",
          f"Deny statements on {notified}: {denied}")


def check_worker_policy():
    """docs/worker-iam-policy.json: what the worker needs for every dead-letter destination."""
    import json
    path = Path(__file__).resolve().parent.parent / "docs/worker-iam-policy.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    stmts = statements(doc)
    allowed = {a for s in stmts if s.get("Effect") == "Allow" for a in as_list(s.get("Action", []))}
    check("sqs:SendMessage" in allowed, "the worker may send sqs: dead letters (sqs:SendMessage)",
          f"allowed actions {sorted(allowed)}")
    denied = [s for s in stmts if s.get("Effect") == "Deny"
              and "arn:aws:s3:::${SourceBucket}/${SourcePrefix}*" in as_list(s.get("Resource", []))]
    check(any("s3:PutObject" in as_list(s.get("Action", [])) for s in denied),
          "the worker may never write under the notified prefix (explicit Deny)", f"Deny statements {denied}")


def check_the_checker():
    """The IAM check must flag what it is meant to flag (run silently on a bad template)."""
    bad = {"Resources": {"R": {"Type": "AWS::IAM::Role", "Properties": {"Policies": [{
        "PolicyName": "p", "PolicyDocument": {"Statement": [
            {"Sid": "StarResource", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
            {"Sid": "StarInIf", "Effect": "Allow", "Action": "sqs:SendMessage",
             "Resource": {"Fn::If": ["C", {"Fn::Sub": "*"}, {"Ref": "AWS::NoValue"}]}},
            {"Sid": "WildcardAction", "Effect": "Allow", "Action": ["s3:*"], "Resource": "arn:aws:s3:::b/*"},
            {"Sid": "PrefixAction", "Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"},
        ]}}]}}}}
    global FAILURES, VERBOSE
    saved, saved_verbose, FAILURES, VERBOSE = FAILURES, VERBOSE, [], False
    saved_passed = PASSED[0]
    stdout = sys.stdout
    try:
        sys.stdout = open(os.devnull, "w")
        check_iam(bad, "bad")
    finally:
        sys.stdout.close()
        sys.stdout = stdout
        flagged, FAILURES, VERBOSE = FAILURES, saved, saved_verbose
        PASSED[0] = saved_passed
    for sid in ("StarResource", "StarInIf", "WildcardAction", "PrefixAction"):
        check(any(f"/ {sid} " in f for f in flagged), f"the IAM check flags a statement like {sid}",
              f"it flagged only {flagged}")


def main():
    t = load_template()
    fn_name, fn_props = section("function: provided.al2023, bootstrap, architecture, build, role, environment",
                                check_function, t)
    section("trigger: S3 → SQS (redrive to a DLQ, 6× visibility, S3-only policy) → ReportBatchItemFailures",
            check_trigger, t, fn_props)
    section("failure paths: OnFailure destination, dead-letter queue", check_failure_paths, t, fn_props)
    section("alarms: DLQ depths > 0, Errors > 0, ObjectLagSeconds", check_alarms, t, fn_name)
    section("IAM: no '*' resources, no wildcard actions", check_iam, t, "template")
    section("IAM: S3/secret grants limited to their prefixes and ARN", check_least_privilege, t)
    section("IAM: no S3 ledger grants with PostgresSink (its ledger is a table)", check_ledger_grants, t)
    section("IAM: Iceberg grants on the one table, warehouse prefix or table bucket", check_iceberg_grants, t)
    section("state machine (optional): Distributed Map over a manifest, least-privilege role",
            check_state_machine, t)
    section("outputs", check_outputs, t)
    section("the IAM check itself catches '*' resources and wildcard actions", check_the_checker)
    section("dead letters: a prefix required, never under the notified prefix", check_dead_letter_locations, t)
    section("worker IAM policy (docs/worker-iam-policy.json)", check_worker_policy)
    x = expanded(copy.deepcopy(t))
    if x is None:
        print("skip   the SAM-transformed template (aws-sam-translator is not installed)")
    else:
        section("after the SAM transform: IAM again, no implicit role or policy", check_expanded, x)
    if FAILURES:
        print(f"\n{len(FAILURES)} template check(s) failed:", *FAILURES, sep="\n  ")
        return 1
    print(f"template checks passed ({PASSED[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
