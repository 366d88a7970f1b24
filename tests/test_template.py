"""template.yaml, held to the code it deploys.

Nothing here needs an AWS account: cfn-lint and the SAM translator run offline,
the table/IAM/secret/alarm checks compare the template with the modules it
describes, and the Lambda entry path runs for real: the exact command Lambda Web
Adapter's bootstrap runs, against the local stack, with the LiveKit keys coming
from a (loopback) Secrets Manager through the handler's own botocore call.
(Over ~300 lines: one template, and its sections' tests read it through the same helpers.)
"""

from __future__ import annotations

import ast
import copy
import importlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from livekit import api
from packaging.specifiers import SpecifierSet
from pydantic import ValidationError

from handler import observability, table
from handler.aws_secrets import SecretUnavailable, secret_region
from handler.settings import Settings
from infra.stack import DEV_API_KEY, DEV_API_SECRET, ROOT, http_ok
from tests.conftest import SECOND_KEY, SECOND_SECRET
from tests.livekit_helpers import eventually, lk_api, named_dispatches
from tests.test_template_fakes import fake_secrets_manager
from tests.webhooks import event, participant, signed_request

TEMPLATE = ROOT / "template.yaml"
CFN_LINT = Path(sys.executable).parent / "cfn-lint"
# The roles the template's loop makes by default: the roster's, each its own task definition and service.
ROLES = ("dispatcher", "driver")
# What the handler's Settings accepts as LiveKit credentials: none may appear as a plain value.
SECRET_VARIABLES = {"LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "SWITCHBOARD_LIVEKIT_API_KEY",
                    "SWITCHBOARD_LIVEKIT_API_SECRET", "SWITCHBOARD_WEBHOOK_KEYS"}
SECRET_ARN_VARIABLE = Settings.model_config["env_prefix"] + "LIVEKIT_SECRET_ARN"


def load_template(text: str | None = None) -> dict[str, Any]:
    from cfnlint.decode import decode_str

    decoded, problems = decode_str(text if text is not None else TEMPLATE.read_text())
    assert not problems, problems
    # Plain dicts and strs: cfn-lint's node types carry line marks we don't compare.
    return json.loads(json.dumps(decoded))


def _substitute(value: Any, name: str, item: str) -> Any:
    """One Fn::ForEach iteration's copy of `value`: ${name} in keys and Fn::Sub strings, Ref name."""
    if isinstance(value, dict):
        if value == {"Ref": name}:
            return item
        out = {}
        for key, inner in value.items():
            inner = _substitute(inner, name, item)
            if key == "Fn::Sub" and isinstance(inner, str) and "${" not in inner.replace(f"${{{name}}}", ""):
                return inner.replace(f"${{{name}}}", item)  # nothing left to substitute: a plain string
            if key == "Ref" and isinstance(inner, str):
                return {"Ref": inner}
            out[key.replace(f"${{{name}}}", item).replace(f"&{{{name}}}", re.sub("[^0-9A-Za-z]", "", item))] = inner
        return out
    if isinstance(value, list):
        return [_substitute(v, name, item) for v in value]
    if isinstance(value, str):
        return value.replace(f"${{{name}}}", item)
    return value


def expand_language_extensions(template: dict[str, Any],
                               parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """AWS::LanguageExtensions' Fn::ForEach over a CommaDelimitedList parameter, as CloudFormation runs it
    before the SAM transform (the only use the template makes of it)."""
    out = copy.deepcopy(template)
    transforms = as_list(out.get("Transform", []))
    assert transforms[0] == "AWS::LanguageExtensions", "ForEach must expand before the SAM transform"
    out["Transform"] = transforms[1:] if len(transforms) > 2 else transforms[1]
    values = {k: v.get("Default") for k, v in out.get("Parameters", {}).items()} | (parameters or {})
    resources: dict[str, Any] = {}
    for key, value in out["Resources"].items():
        if not key.startswith("Fn::ForEach::"):
            resources[key] = value
            continue
        name, collection, body = value
        assert collection == {"Ref": collection["Ref"]}, "the loop runs over a parameter"
        items = [i.strip() for i in values[collection["Ref"]].split(",") if i.strip()]
        assert items, f"{collection['Ref']} lists no role"
        for item in items:
            for logical_id, resource in _substitute(body, name, item).items():
                assert logical_id not in resources, f"{logical_id} made twice"
                resources[logical_id] = resource
    out["Resources"] = resources
    return out


def sam_translate(template: dict[str, Any], region: str = "eu-west-1") -> dict[str, Any]:
    """The SAM transform, offline, prepared the way cfn-lint's SAM transform prepared it."""
    from samtranslator.parser import parser
    from samtranslator.translator.translator import Translator

    sam = copy.deepcopy(template)
    if "Fn::ForEach" in json.dumps(sam):
        sam = expand_language_extensions(sam)
    for resource in sam["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            # The translator accepts only S3 code locations; `sam build` rewrites the local path later.
            code_uri = resource["Properties"].get("CodeUri", ".")
            if not (isinstance(code_uri, str) and code_uri.startswith("s3://")):
                resource["Properties"]["CodeUri"] = "s3://bucket/value"
    with pytest.MonkeyPatch.context() as mp:
        # The translator builds ARNs for the region it believes it runs in.
        mp.setenv("AWS_DEFAULT_REGION", region)
        return Translator(managed_policy_map={}, sam_parser=parser.Parser()).translate(
            sam_template=sam, parameter_values={})


def cfn_lint(path: Path) -> subprocess.CompletedProcess:
    # With cfn-lint-serverless's rules (a cfn-lint plugin: -a names its module).
    return subprocess.run([str(CFN_LINT), str(path), "-a", "cfn_lint_serverless.rules"], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template) -> dict[str, Any]:
    """The resources as CloudFormation sees them once AWS::LanguageExtensions has run: one set per role."""
    return expand_language_extensions(template)["Resources"]


@pytest.fixture(scope="module")
def translated(template) -> dict[str, Any]:
    return sam_translate(template)


@pytest.fixture(scope="module")
def function(resources) -> dict[str, Any]:
    return resources["WebhookFunction"]["Properties"]


def containers(resources) -> dict[str, dict[str, Any]]:
    out = {}
    for role in ROLES:
        (container,) = resources[f"Worker{role}TaskDefinition"]["Properties"]["ContainerDefinitions"]
        out[role] = container
    return out


# --- validity --------------------------------------------------------------------


def test_cfn_lint_finds_nothing():
    done = cfn_lint(TEMPLATE)
    # Warnings fail too; the few the template silences are explained there and listed below.
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_only_the_explained_lint_checks_are_silenced(template):
    silenced = {name: r["Metadata"]["cfn-lint"]["config"]["ignore_checks"]
                for name, r in template["Resources"].items()
                if isinstance(r, dict) and "cfn-lint" in r.get("Metadata", {})}
    # WS1000: Tracing is a parameter, not the literal Active; WS1004: LoggingConfig names the
    # function's log group, which the rule does not read; ES7000: an alarm email has no DLQ to replay to.
    assert silenced == {"WebhookFunction": ["WS1000", "WS1004"], "SweeperFunction": ["WS1000", "WS1004"],
                        "AlarmEmailSubscription": ["ES7000"]}


def test_the_sam_transform_succeeds_offline_and_its_output_lints_clean(translated, tmp_path):
    kinds = {name: r["Type"] for name, r in translated["Resources"].items()}
    assert kinds["WebhookFunction"] == "AWS::Lambda::Function"
    assert kinds["WebhookApi"] == "AWS::ApiGatewayV2::Api"
    assert not [t for t in kinds.values() if t.startswith("AWS::Serverless::")]
    routes = translated["Resources"]["WebhookApi"]["Properties"]["Body"]["paths"]
    assert set(routes) == {"/webhook", "/healthz"}
    assert set(routes["/webhook"]) == {"post"} and set(routes["/healthz"]) == {"get"}
    out = tmp_path / "translated.json"
    # The loop has consumed WorkerRoles by now (CloudFormation keeps the parameter, unused, too).
    out.write_text(json.dumps(translated | {"Parameters": {
        k: v for k, v in translated["Parameters"].items() if k != "WorkerRoles"}}))
    done = cfn_lint(out)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


# --- the table ---------------------------------------------------------------------


def test_the_table_is_the_one_handler_table_defines(resources):
    props = resources["DispatchTable"]["Properties"]
    by_name = lambda items, key: sorted(items, key=lambda i: i[key])  # noqa: E731
    assert props["KeySchema"] == table.KEY_SCHEMA
    assert by_name(props["AttributeDefinitions"], "AttributeName") == by_name(table.ATTRIBUTE_DEFINITIONS,
                                                                              "AttributeName")
    assert by_name(props["GlobalSecondaryIndexes"], "IndexName") == by_name(table.GLOBAL_SECONDARY_INDEXES,
                                                                            "IndexName")
    assert props["TimeToLiveSpecification"] == {"AttributeName": table.TTL_ATTRIBUTE, "Enabled": True}
    assert props["BillingMode"] == table.create_table_request("t")["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert resources["DispatchTable"]["DeletionPolicy"] == "Retain"
    assert resources["WebhookFunction"]["Properties"]["Environment"]["Variables"]["SWITCHBOARD_TABLE_NAME"] == {
        "Ref": "DispatchTable"}


# --- least privilege ---------------------------------------------------------------

# The IAM actions each DynamoDB client call needs (a transaction is authorized per item).
IAM_ACTIONS = {
    "put_item": {"dynamodb:PutItem"},
    "update_item": {"dynamodb:UpdateItem"},
    "delete_item": {"dynamodb:DeleteItem"},
    "get_item": {"dynamodb:GetItem"},
    "query": {"dynamodb:Query"},
    "scan": {"dynamodb:Scan"},
    "batch_get_item": {"dynamodb:BatchGetItem"},
    "batch_write_item": {"dynamodb:BatchWriteItem"},
}
TRANSACT_ITEM_ACTIONS = {"Put": "dynamodb:PutItem", "Update": "dynamodb:UpdateItem",
                         "Delete": "dynamodb:DeleteItem", "ConditionCheck": "dynamodb:ConditionCheckItem"}


def dynamo_store_class() -> ast.ClassDef:
    tree = ast.parse((ROOT / "handler" / "dynamo.py").read_text())
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DynamoStore")


# DynamoStore reaches its client through three helpers: _call and _write_if, given the
# operation's name (a constant) first, and _transact, given a TransactWriteItems' items.
STORE_CALL_HELPERS = ("_call", "_write_if")


def actions_the_store_calls() -> set[str]:
    actions: set[str] = set()
    store = dynamo_store_class()
    for method in store.body:
        if not isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)) or method.name in STORE_CALL_HELPERS:
            continue
        # Only the helpers name the operation at run time; anywhere else the scan below could miss one.
        assert not [n for n in ast.walk(method) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                    and n.func.id == "getattr" and "_db" in ast.unparse(n)], f"{method.name}: getattr on the client"
    for node in ast.walk(store):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        on_self = isinstance(node.func.value, ast.Name) and node.func.value.id == "self"
        if on_self and node.func.attr in STORE_CALL_HELPERS:
            assert node.args and isinstance(node.args[0], ast.Constant), \
                f"DynamoStore.{node.func.attr} with an operation that is not a constant: {ast.unparse(node)}"
            call = node.args[0].value
        elif on_self and node.func.attr == "_transact" or (
                isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "_db"
                and node.func.attr == "transact_write_items"):
            kinds = {k.value for n in ast.walk(node) if isinstance(n, ast.Dict)
                     for k in n.keys if isinstance(k, ast.Constant) and k.value in TRANSACT_ITEM_ACTIONS}
            actions |= {TRANSACT_ITEM_ACTIONS[k] for k in kinds}
            continue
        elif isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "_db":
            call = node.func.attr
        else:
            continue
        assert call in IAM_ACTIONS, f"DynamoStore calls {call}: map it to its IAM action here"
        actions |= IAM_ACTIONS[call]
    return actions


def store_methods_using_an_index() -> set[str]:
    return {f.name for f in dynamo_store_class().body
            if isinstance(f, ast.AsyncFunctionDef) and "IndexName" in ast.unparse(f)}


# The webhook path's orchestrators: what they call on `self.store` is what the function does with the table.
WEBHOOK_PATH = ("pipeline.py", "slot_dispatch.py", "presence.py")


def webhook_path_source() -> str:
    return "\n".join((ROOT / "handler" / name).read_text() for name in WEBHOOK_PATH)


def store_methods_the_handler_calls() -> set[str]:
    """DynamoStore methods the webhook path reaches: its modules' store calls and what those call."""
    todo = {n.attr for name in WEBHOOK_PATH for n in ast.walk(ast.parse((ROOT / "handler" / name).read_text()))
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and n.value.attr == "store"}
    methods = {f.name: f for f in dynamo_store_class().body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
    reached: set[str] = set()
    while todo:
        name = todo.pop()
        reached.add(name)
        todo |= {n.attr for n in ast.walk(methods[name]) if isinstance(n, ast.Attribute)
                 and isinstance(n.value, ast.Name) and n.value.id == "self" and n.attr in methods} - reached
    return reached


def function_policy(translated, function: str = "WebhookFunction") -> tuple[list[dict[str, Any]], list[Any]]:
    role = translated["Resources"][f"{function}Role"]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    return statements, role["ManagedPolicyArns"]


# Logs, and X-Ray's write-only policy, which SAM adds for Tracing (PutTraceSegments and the like; it reads nothing).
MANAGED_POLICIES = ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
                    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_function_may_do_exactly_what_the_store_does_to_its_table_and_read_its_secret(translated):
    statements, managed = function_policy(translated)
    assert managed == MANAGED_POLICIES
    assert all(s["Effect"] == "Allow" and "Condition" not in s for s in statements)
    grants = {(a, json.dumps(r, sort_keys=True)) for s in statements
              for a in as_list(s["Action"]) for r in as_list(s["Resource"])}
    table_arn = json.dumps({"Fn::GetAtt": ["DispatchTable", "Arn"]})
    secret = json.dumps({"Ref": "LiveKitSecretArn"})
    assert grants == {(a, table_arn) for a in actions_the_store_calls()} | {("secretsmanager:GetSecretValue", secret)}
    # Spelled out too, so a change to the scan above cannot quietly widen the grant.
    # GetItem: the room's set of open slots, read when the cap looks full (DynamoStore._room_is_full).
    assert actions_the_store_calls() == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                         "dynamodb:Query"}


def test_the_handler_never_queries_an_index_so_the_function_gets_none():
    # If the webhook path ever reads through a GSI, grant "<table arn>/index/<name>" for it.
    indexed, called = store_methods_using_an_index(), store_methods_the_handler_calls()
    assert {"query_log", "room_timeline"} <= indexed
    assert {"load_slots", "claim", "record_event"} <= called
    assert not called & indexed


def store_methods_the_sweeper_calls() -> set[str]:
    tree = ast.parse((ROOT / "handler" / "sweeper.py").read_text())
    return {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Attribute) and n.value.attr == "store"}


def test_the_sweeper_may_do_what_the_store_does_plus_read_its_work_list_index(translated):
    statements, managed = function_policy(translated, "SweeperFunction")
    assert managed == MANAGED_POLICIES
    grants = {(a, json.dumps(r, sort_keys=True)) for s in statements
              for a in as_list(s["Action"]) for r in as_list(s["Resource"])}
    table_arn = json.dumps({"Fn::GetAtt": ["DispatchTable", "Arn"]})
    index_arns = [json.dumps({"Fn::Sub": f"${{DispatchTable.Arn}}/index/{index}"}) for index in ("by_pending", "by_agent")]
    secret = json.dumps({"Ref": "LiveKitSecretArn"})
    assert grants == ({(a, table_arn) for a in actions_the_store_calls()}
                      | {(a, arn) for a in actions_the_store_calls() for arn in index_arns}
                      | {("secretsmanager:GetSecretValue", secret)})
    # The indexes the sweeper reads: its work list, and by_agent (query_log(agent=...)) to tell a
    # worker that refused a job from no worker at all; by_room and by_day are logs/explain's.
    indexed = store_methods_using_an_index() & store_methods_the_sweeper_calls()
    assert indexed == {"pending", "query_log"}
    assert "query_log(agent=" in (ROOT / "handler" / "sweeper.py").read_text()
    source = ast.unparse(next(f for f in dynamo_store_class().body if getattr(f, "name", "") == "pending"))
    assert "INDEX_BY_PENDING" in source and table.INDEX_BY_PENDING == "by_pending"


def test_the_sweeper_runs_every_minute_from_an_entry_point_that_resolves(resources):
    sweeper = resources["SweeperFunction"]["Properties"]
    module, attribute = sweeper["Handler"].rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), attribute))
    assert sweeper["Events"]["Schedule"]["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    assert sweeper["ReservedConcurrentExecutions"] == 1 and sweeper["Timeout"] < 60
    env = sweeper["Environment"]["Variables"]
    assert env["SWITCHBOARD_LIVEKIT_SECRET_ARN"] == {"Ref": "LiveKitSecretArn"}
    assert not {"LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "SWITCHBOARD_WEBHOOK_KEYS"} & set(env)


def test_the_workers_execution_role_reads_only_the_secret_and_its_log_group(resources):
    role = resources["WorkerExecutionRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    statements = {s["Sid"]: s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]}
    assert statements["LiveKitSecret"]["Action"] == "secretsmanager:GetSecretValue"
    assert statements["LiveKitSecret"]["Resource"] == {"Ref": "LiveKitSecretArn"}
    assert statements["Logs"]["Resource"] == {"Fn::GetAtt": ["WorkerLogGroup", "Arn"]}
    assert set(statements) == {"LiveKitSecret", "Logs", "PullImage"}
    assert all(a.startswith("ecr:") for a in statements["PullImage"]["Action"])
    for role_name in ROLES:
        # The workers call no AWS API: their tasks get no role.
        assert "TaskRoleArn" not in resources[f"Worker{role_name}TaskDefinition"]["Properties"]


# --- secrets -------------------------------------------------------------------------


def test_no_secret_is_a_parameter_or_a_plain_environment_value(template, resources, function):
    for name, parameter in template["Parameters"].items():
        if re.search(r"secret|password|token|api.?key", name, re.I):
            assert name == "LiveKitSecretArn" and "Default" not in parameter
    pattern = template["Parameters"]["LiveKitSecretArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:switchboard/livekit-AbC12x")
    # A partial ARN would make the IAM grants miss the real secret (its name has a random suffix).
    assert not re.fullmatch(pattern, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:switchboard/livekit")
    assert not re.fullmatch(pattern, "devkey:secret")

    env = function["Environment"]["Variables"]
    assert not SECRET_VARIABLES & set(env)
    assert env[SECRET_ARN_VARIABLE] == {"Ref": "LiveKitSecretArn"}
    for role, container in containers(resources).items():
        assert not SECRET_VARIABLES & {e["Name"] for e in container["Environment"]}
        assert {s["Name"]: s["ValueFrom"] for s in container["Secrets"]} == {
            name: {"Fn::Sub": f"${{LiveKitSecretArn}}:{name}::"} for name in ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")}


def test_settings_read_the_secret_once_and_the_environment_still_wins(monkeypatch):
    arn = f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:unit/{uuid.uuid4().hex[:8]}-AbCdEf"
    document = {"LIVEKIT_API_KEY": "k-from-secret", "LIVEKIT_API_SECRET": "s-from-secret",
                "SWITCHBOARD_WEBHOOK_KEYS": {"rotated": "r-from-secret"}}
    with fake_secrets_manager({arn: document}) as sm:
        aws_env(monkeypatch, sm.url)
        monkeypatch.setenv(SECRET_ARN_VARIABLE, arn)
        settings = Settings()
        assert settings.signing_keys == {"k-from-secret": "s-from-secret", "rotated": "r-from-secret"}
        assert settings.livekit_api_secret.get_secret_value() == "s-from-secret"
        assert "s-from-secret" not in repr(settings) and "r-from-secret" not in repr(settings)
        monkeypatch.setenv("LIVEKIT_API_KEY", "k-from-env")
        assert Settings().livekit_api_key == "k-from-env"
        assert Settings(livekit_api_key="k-from-init").livekit_api_key == "k-from-init"
        (read,) = sm.reads_of(arn)  # three Settings, one read
        assert read.target == "secretsmanager.GetSecretValue"
        # Signed for the secret's own region, whatever AWS_REGION says.
        assert "/eu-west-1/secretsmanager/aws4_request" in read.authorization


def test_without_an_arn_nothing_is_read(monkeypatch):
    with fake_secrets_manager({}) as sm:
        aws_env(monkeypatch, sm.url)
        monkeypatch.delenv(SECRET_ARN_VARIABLE, raising=False)
        monkeypatch.setenv("LIVEKIT_API_KEY", "k")
        monkeypatch.setenv("LIVEKIT_API_SECRET", "s")
        assert Settings().signing_keys == {"k": "s"}
        assert sm.requests == []


def test_an_unusable_secret_stops_start_up_with_a_message_that_holds_no_value(monkeypatch):
    missing = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:missing-AbCdEf"
    garbled = f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:garbled{uuid.uuid4().hex[:6]}-AbCdEf"
    listed = f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:list{uuid.uuid4().hex[:6]}-AbCdEf"
    with fake_secrets_manager({garbled: "LIVEKIT_API_SECRET=hunter2-not-json", listed: '["hunter2"]'}) as sm:
        aws_env(monkeypatch, sm.url)
        for arn, expected in ((missing, "ResourceNotFoundException"), (garbled, "not a JSON object"),
                              (listed, "not a JSON object")):
            with pytest.raises(SecretUnavailable) as info:
                Settings(livekit_secret_arn=arn)
            assert expected in str(info.value) and arn in str(info.value)
            assert "hunter2" not in str(info.value)


def test_a_malformed_value_in_the_secret_is_refused_without_echoing_it(monkeypatch):
    arn = f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:typo{uuid.uuid4().hex[:6]}-AbCdEf"
    with fake_secrets_manager({arn: {"SWITCHBOARD_WEBHOOK_KEYS": "APIold=hunter2"}}) as sm:
        aws_env(monkeypatch, sm.url)
        with pytest.raises(ValidationError) as info:
            Settings(livekit_secret_arn=arn)
    assert "key:secret" in str(info.value) and "hunter2" not in str(info.value)


def test_the_region_comes_from_the_arn():
    assert secret_region("arn:aws:secretsmanager:ap-southeast-2:123456789012:secret:x-AbCdEf") == "ap-southeast-2"
    assert secret_region("switchboard/livekit") is None


def aws_env(monkeypatch, endpoint: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# --- the Lambda entry path -------------------------------------------------------------


def app_routes() -> set[tuple[str, str]]:
    from handler.app import create_app

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:  # create_app configures logging for a server process; keep pytest's own handlers
        app = create_app(Settings(livekit_secret_arn=None), store=object(), dispatcher=object())
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    return {(r.path, m) for r in app.routes for m in r.methods - {"HEAD"}}


def test_the_api_routes_are_the_apps_routes_and_the_readiness_check_is_one(function):
    events = {(e["Properties"]["Path"], e["Properties"]["Method"].upper())
              for e in function["Events"].values() if e["Type"] == "HttpApi"}
    assert events == app_routes()
    env = function["Environment"]["Variables"]
    assert (env["AWS_LWA_READINESS_CHECK_PATH"], "GET") in events


def test_the_handler_is_the_bootstrap_script_lambda_web_adapter_runs(resources, function):
    # The bundle's root is laid out like the repository's for what it holds (handler/, infra/routing.yaml).
    script = ROOT / function["Handler"]
    assert script.is_file() and os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/bin/bash\n")
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # sam build runs `make build-<Function>` in the repository root (tests/test_bundle.py builds it for real).
    makefile = (ROOT / "Makefile").read_text()
    for name in ("WebhookFunction", "SweeperFunction"):
        metadata = resources[name]["Metadata"]
        assert (metadata["BuildMethod"], metadata["ContextPath"], metadata["WorkingDirectory"]) == ("makefile", ".", ".")
        assert re.search(rf"^[^\n]*\bbuild-{name}\b[^\n]*:\n\tinfra/bundle\.sh \"\$\(ARTIFACTS_DIR\)\"$", makefile, re.M)
        # SAM copies CodeUri to a scratch folder before the build: it must stay the small handler package.
        assert resources[name]["Properties"]["CodeUri"] == "handler"
    env = function["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert function["Architectures"] == ["arm64"]
    assert function["Layers"] == [{"Fn::Sub": "arn:aws:lambda:${AWS::Region}:753240598075:layer:"
                                             "LambdaAdapterLayerArm64:${WebAdapterLayerVersion}"}]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert function["Runtime"].startswith("python")
    assert SpecifierSet(requires).contains(function["Runtime"].removeprefix("python"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resolve(value: Any, refs: dict[str, Any], conditions: dict[str, bool]) -> Any:
    """Enough of CloudFormation's intrinsics for the function's environment."""
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return refs[arg]
        if fn == "Fn::If":
            name, if_true, if_false = arg
            return resolve(if_true if conditions[name] else if_false, refs, conditions)
    assert isinstance(value, str), value
    return value


def condition(expression: Any, refs: dict[str, Any]) -> bool:
    ((fn, arg),) = expression.items()
    if fn == "Fn::Not":
        return not condition(arg[0], refs)
    if fn == "Fn::Equals":
        left, right = (a if isinstance(a, (int, float)) else resolve(a, refs, {}) for a in arg)
        return str(left) == str(right)
    raise AssertionError(f"condition function {fn} is not modelled here")


@pytest.mark.anyio
async def test_a_signed_webhook_through_the_exact_command_lambda_web_adapter_runs(
        local_stack, template, function, room_name, monkeypatch):
    arn = f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:switchboard/e2e-{uuid.uuid4().hex[:6]}"
    # What an operator stores: LiveKit's key pair plus a second key accepted during a rotation.
    secret = {"LIVEKIT_API_KEY": DEV_API_KEY, "LIVEKIT_API_SECRET": DEV_API_SECRET,
              "SWITCHBOARD_WEBHOOK_KEYS": f"{SECOND_KEY}:{SECOND_SECRET}"}
    port = free_port()
    parameters = {"LiveKitUrl": local_stack.livekit_url, "LiveKitSecretArn": arn,
                  "AllowedAgents": local_stack.env["SWITCHBOARD_ALLOWED_AGENTS"], "LogLevel": "INFO",
                  # Relative to the bundle root, as it would be in Lambda: run.sh must cd there.
                  "RoutingFile": "infra/routing.yaml", "ReservedConcurrency": 0, "AlarmEmail": "", "SnapStart": "true",
                  "DispatchTable": local_stack.env["SWITCHBOARD_TABLE_NAME"], "AWS::NoValue": None}
    conditions = {name: condition(expr, parameters) for name, expr in template["Conditions"].items()}
    lambda_env = {k: v for k, v in ((k, resolve(v, parameters, conditions))
                                    for k, v in function["Environment"]["Variables"].items()) if v is not None}
    assert SECRET_VARIABLES.isdisjoint(lambda_env)
    for name in SECRET_VARIABLES:  # nothing of the test process's own may stand in for the secret
        monkeypatch.delenv(name, raising=False)

    with fake_secrets_manager({arn: secret}) as sm:
        env = lambda_env | {
            # What Lambda provides: the bundle root, the Handler, credentials and region.
            "LAMBDA_TASK_ROOT": str(ROOT), "_HANDLER": function["Handler"],
            "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_ENDPOINT_URL_DYNAMODB": local_stack.env["AWS_ENDPOINT_URL_DYNAMODB"],
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": sm.url,
            # The runtime's python3 is this venv's; the template's 8080 is the dev stack's here.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "AWS_LWA_PORT": str(port),
        }
        # Lambda Web Adapter's /opt/bootstrap, verbatim: it execs the function's Handler.
        service = local_stack.stack.start_process(
            f"lambda-{port}", ["/bin/bash", "-c", 'exec -- "${LAMBDA_TASK_ROOT}/${_HANDLER}"'], env)
        try:
            base = f"http://127.0.0.1:{port}"

            def ready() -> bool:
                assert service.alive(), service.log_tail()
                try:
                    return http_ok(base + lambda_env["AWS_LWA_READINESS_CHECK_PATH"])
                except OSError:
                    return False

            await eventually(ready, timeout=60, interval=0.1)

            async with lk_api(local_stack.livekit_url) as lk:
                room = await lk.room.create_room(api.CreateRoomRequest(name=room_name, empty_timeout=60))
                try:
                    body, headers = signed_request(event("room_started", room.name, room.sid,
                                                         {"agents": [{"name": "driver"}]}))
                    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                        answer = await client.post("/webhook", content=body, headers=headers)
                        assert answer.status_code == 200, answer.text
                        (slot,) = answer.json()["outcome"]["slots"]
                        assert (slot["slot"], slot["result"]) == ("DISPATCH#driver", "dispatched")
                        (dispatch,) = await named_dispatches(lk, room.name)
                        assert (dispatch.agent_name, dispatch.id) == ("driver", slot["detail"])

                        # The rotation key from the secret's SWITCHBOARD_WEBHOOK_KEYS is accepted too.
                        body, headers = signed_request(
                            event("participant_joined", room.name, room.sid, {"agents": [{"name": "driver"}]},
                                  participant=participant("caller")), key=SECOND_KEY, secret=SECOND_SECRET)
                        answer = await client.post("/webhook", content=body, headers=headers)
                        assert answer.status_code == 200, answer.text
                        assert answer.json()["outcome"]["slots"][0]["result"] == "duplicate"

                        forged = signed_request(body, secret="not-the-secret")[1]
                        assert (await client.post("/webhook", content=body, headers=forged)).status_code == 401
                    assert len(await named_dispatches(lk, room.name)) == 1
                finally:
                    await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))
        finally:
            service.stop()

        (read,) = sm.reads_of(arn)  # once per cold start, not per request
        assert "/eu-west-1/secretsmanager/aws4_request" in read.authorization
    log = service.log_path.read_text(errors="replace")
    assert "switchboard ready" in log and SECOND_KEY in log and DEV_API_KEY in log  # the key ids, from the secret
    assert SECOND_SECRET not in log


# --- the workers -----------------------------------------------------------------------


def test_each_role_runs_the_worker_cli_with_a_drain_that_ends_before_ecs_kills_it(resources, monkeypatch):
    from worker.__main__ import parse_args
    from worker.config import WorkerSettings
    from worker.roster import ROSTER

    for role, container in containers(resources).items():
        argv = container["EntryPoint"] + container["Command"]
        assert argv == ["python", "-m", "worker", role, "start"]
        args = parse_args(argv[3:])
        assert (args.role, args.command) == (role, "start") and role in ROSTER
        assert container["Image"] == {"Ref": "WorkerImageUri"}
        with monkeypatch.context() as mp:
            for variable in container["Environment"]:
                if isinstance(variable["Value"], str):
                    mp.setenv(variable["Name"], variable["Value"])
            settings = WorkerSettings()
        assert settings.drain_timeout_seconds < container["StopTimeout"] == 120
        # The health port as the worker reads it (the image sets it: 8081); the image test runs this check.
        health_port_variable = WorkerSettings.model_config["env_prefix"] + "HEALTH_PORT"
        assert settings.health_port == 8081
        assert f"os.environ['{health_port_variable}']" in " ".join(container["HealthCheck"]["Command"])
        log = container["LogConfiguration"]
        assert log["LogDriver"] == "awslogs" and log["Options"]["awslogs-group"] == {"Ref": "WorkerLogGroup"}


def test_workers_take_no_inbound_traffic_and_scale_on_cpu(resources):
    group = resources["WorkerSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in group and group["SecurityGroupEgress"]
    for role in ROLES:
        name = f"Worker{role}"
        service = resources[f"{name}Service"]["Properties"]
        assert "LoadBalancers" not in service and service["LaunchType"] == "FARGATE"
        assert service["TaskDefinition"] == {"Ref": f"{name}TaskDefinition"}
        assert service["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == {"Ref": "AssignPublicIp"}
        target = resources[f"{name}ScalableTarget"]["Properties"]
        assert f"${{{name}Service.Name}}" in target["ResourceId"]["Fn::Sub"]
        policy = resources[f"{name}ScalingPolicy"]["Properties"]
        assert policy["PolicyType"] == "TargetTrackingScaling"
        assert policy["ScalingTargetId"] == {"Ref": f"{name}ScalableTarget"}


# --- alarms and outputs ----------------------------------------------


def test_the_dispatch_failures_alarm_watches_the_metric_the_handler_emits(resources, monkeypatch):
    import io

    assert 'metrics.add("DispatchFailures"' in webhook_path_source()
    stream = io.StringIO()  # what the function writes to stdout, where Lambda's EMF agent reads it
    monkeypatch.setattr(observability, "_metrics_stream", stream)
    metrics = observability.Metrics()
    metrics.add("DispatchFailures", 1)
    metrics.flush()
    emitted = json.loads(stream.getvalue())
    (directive,) = emitted["_aws"]["CloudWatchMetrics"]
    alarm = resources["DispatchFailuresAlarm"]["Properties"]
    assert alarm["Namespace"] == directive["Namespace"] == "Switchboard"
    assert alarm["MetricName"] == "DispatchFailures"
    assert [d["Name"] for d in alarm["Dimensions"]] == directive["Dimensions"][0] == ["service"]
    assert alarm["Dimensions"] == [{"Name": "service", "Value": emitted["service"]}]


def test_every_alarm_reaches_the_topic_and_watches_this_stack(resources):
    alarms = {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) == {"WebhookErrorsAlarm", "Webhook5xxAlarm", "DispatchFailuresAlarm",
                           "SweeperFailuresAlarm", "SweeperErrorsAlarm", "TimeToAgentAlarm",
                           "LiveKitRefusedTheSweeperAlarm"}
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert alarms["WebhookErrorsAlarm"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "WebhookFunction"}}]
    assert alarms["Webhook5xxAlarm"]["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "WebhookApi"}}]
    assert alarms["SweeperErrorsAlarm"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "SweeperFunction"}}]


def test_the_sweeper_failures_alarm_watches_the_metric_the_sweeper_emits(resources):
    assert 'metrics.add("SweepErrors"' in (ROOT / "handler" / "sweeper.py").read_text()
    alarm = resources["SweeperFailuresAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (observability.NAMESPACE, "SweepErrors")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "switchboard"}]


def test_the_webhook_url_output_is_the_post_route(template, function):
    url = template["Outputs"]["WebhookUrl"]["Value"]["Fn::Sub"]
    assert url == "https://${WebhookApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/webhook"
    assert {"Path": "/webhook", "Method": "POST", "ApiId": {"Ref": "WebhookApi"}} in [
        e["Properties"] for e in function["Events"].values()]


# --- the roster, SnapStart, operability --------------------------------------------------


def test_the_roster_parameter_makes_each_roles_resources_and_nothing_else(template):
    from worker.roster import ROSTER

    roles = template["Parameters"]["WorkerRoles"]["Default"].split(",")
    assert tuple(roles) == ROLES and set(roles) <= set(ROSTER)
    kinds = ("TaskDefinition", "Service", "ScalableTarget", "ScalingPolicy")
    for chosen in (["dispatcher"], ["dispatcher", "driver", "translator"]):
        resources = expand_language_extensions(template, {"WorkerRoles": ",".join(chosen)})["Resources"]
        made = {name for name in resources if name.startswith("Worker") and name.endswith(kinds)}
        assert made == {f"Worker{role}{kind}" for role in chosen for kind in kinds}
        for role in chosen:
            (container,) = resources[f"Worker{role}TaskDefinition"]["Properties"]["ContainerDefinitions"]
            assert container["Command"] == [role, "start"]
            assert container["LogConfiguration"]["Options"]["awslogs-stream-prefix"] == role
            assert resources[f"Worker{role}TaskDefinition"]["Properties"]["Family"] == {
                "Fn::Sub": f"${{AWS::StackName}}-{role}"}


def test_the_function_runs_the_newest_tested_runtime_with_snapstart_behind_an_alias(template, function, translated):
    assert function["Runtime"] == "python3.13"  # make test-py313 runs the handler's tests on it
    assert function["AutoPublishAlias"] == "live"
    assert function["SnapStart"] == {"ApplyOn": {"Fn::If": ["SnapStartOn", "PublishedVersions", "None"]}}
    assert template["Parameters"]["SnapStart"]["Default"] == "true"
    # The API invokes the alias, never $LATEST: a version's snapshot serves its traffic.
    integration = json.dumps(translated["Resources"]["WebhookApi"]["Properties"]["Body"]["paths"])
    assert "WebhookFunctionAliaslive" in integration
    # Adapter v1.1.0 (layer 30) is the first with SnapStart hooks; the app serves exactly the paths it calls.
    assert template["Parameters"]["WebAdapterLayerVersion"]["Default"] >= 30
    env = function["Environment"]["Variables"]
    settings = Settings(livekit_secret_arn=None, **{
        name: env[name] for name in ("AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH", "AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH")})
    from handler.app import create_app

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        app = create_app(settings, store=object(), dispatcher=object())
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    routes = {(r.path, m) for r in app.routes for m in r.methods - {"HEAD"}}
    assert {(env["AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH"], "POST"),
            (env["AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH"], "POST")} <= routes
    # Ready means /healthz's 200, within Lambda's 10 s init (and restore) limit.
    assert env["AWS_LWA_READINESS_CHECK_HEALTHY_STATUS"] == "200"
    assert float(env["AWS_LWA_READINESS_CHECK_TIMEOUT_SECONDS"]) < 10


def test_each_function_logs_to_its_own_group_with_retention(resources):
    groups = {}
    for name in ("WebhookFunction", "SweeperFunction"):
        group = resources[name]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert resources[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        groups[name] = group
    assert len(set(groups.values())) == 2


def test_the_api_logs_every_request_is_throttled_and_functions_are_traced(resources, template):
    api_props = resources["WebhookApi"]["Properties"]
    group = api_props["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert resources[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    fields = json.loads(" ".join(api_props["AccessLogSettings"]["Format"].split()))
    assert {"status", "route", "latencyMs", "integrationError"} <= set(fields)
    assert api_props["DefaultRouteSettings"] == {"ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
                                                 "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"}}
    for name in ("WebhookFunction", "SweeperFunction"):
        assert resources[name]["Properties"]["Tracing"] == {"Ref": "Tracing"}
    assert template["Parameters"]["Tracing"]["Default"] == "Active"


def handler_metric_names() -> set[str]:
    """Every metric name the handler's code emits (Metrics.add, emit)."""
    lines = [line for p in (ROOT / "handler").glob("*.py") for line in p.read_text().splitlines()
             if re.search(r"\b(metrics\.add|emit)\(", line)]
    return {name for line in lines for name in re.findall(r'"([A-Z][A-Za-z]+)"', line)}


def test_the_dashboard_shows_only_metrics_the_stack_emits(resources):
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    # Fn::Sub's variables, filled with stand-ins, leave JSON CloudWatch accepts.
    dashboard = json.loads(re.sub(r"\$\{[^}]+\}", "1", body))
    shown: set[tuple[str, str]] = set()
    for widget in dashboard["widgets"]:
        for metric in widget["properties"]["metrics"]:
            names = [m for m in metric if isinstance(m, str)]
            if names:
                shown.add((names[0], names[1]))
            for expression in (m["expression"] for m in metric if isinstance(m, dict) and "expression" in m):
                shown |= {("Switchboard", n) for n in re.findall(r'MetricName=\\?"(\w+)', expression)}
    titles = {w["properties"]["title"] for w in dashboard["widgets"]}
    assert {"Webhooks by answer", "Dispatches", "Sweeper: actions and errors"} <= titles
    ours = {name for namespace, name in shown if namespace == observability.NAMESPACE}
    assert {"Dispatches", "Redispatches", "DispatchFailures", "TimeToAgent", "ClaimsInProgress",
            "SweepActions", "SweepErrors", "InertEvents", "ReplayedDeliveries", "CreateDispatchLatency"} <= ours
    assert ours <= handler_metric_names()
    assert {("AWS/ApiGateway", "4xx"), ("AWS/ApiGateway", "5xx"), ("AWS/Lambda", "Errors")} <= shown


def test_time_to_agent_is_emitted_on_a_confirmed_join_and_alarmed_at_p95(resources, capsys):
    from livekit.protocol.models import ParticipantInfo, Room

    assert "record_time_to_agent(event)" in webhook_path_source()
    room = Room(sid="RM_x", name="r", creation_time=1_700_000_000, creation_time_ms=1_700_000_000_250)
    joined = ParticipantInfo(identity="agent", joined_at=1_700_000_001, joined_at_ms=1_700_000_001_480)
    assert observability.time_to_agent_ms(room, joined) == 1230
    assert observability.time_to_agent_ms(room, ParticipantInfo(identity="agent")) is None
    observability.emit("TimeToAgent", 1230, "Milliseconds")
    emitted = json.loads(capsys.readouterr().out)
    (directive,) = emitted["_aws"]["CloudWatchMetrics"]
    alarm = resources["TimeToAgentAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (directive["Namespace"], directive["Metrics"][0]["Name"])
    assert directive["Metrics"][0]["Unit"] == "Milliseconds" and emitted["TimeToAgent"] == 1230
    assert alarm["Dimensions"] == [{"Name": "service", "Value": emitted["service"]}]
    assert alarm["ExtendedStatistic"] == "p95" and alarm["Threshold"] == {"Ref": "TimeToAgentAlarmMs"}


def test_sweep_actions_are_one_metric_per_action(capsys):
    observability.record_sweep({"joined": 2, "agent_missing": 1})
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["action"], d["SweepActions"]) for d in documents] == [("agent_missing", 1), ("joined", 2)]
    assert documents[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "action"]]
    assert "record_sweep(report" in (ROOT / "handler" / "sweep_lambda.py").read_text()


def test_no_stale_reference_is_left():
    text = TEMPLATE.read_text() + (ROOT / "README.md").read_text()
    assert "docs/deploy.md" not in text and "python-uv" not in text
    assert "v0.9.1" not in text and "--beta-features" not in text


def test_the_sweepers_metrics_say_which_project_and_the_alarm_sees_every_project(resources, capsys):
    """Each project's sweep emits LiveKitListFailures and SweepErrors twice over in one EMF document:
    per service (what the alarms watch, whichever project failed) and per service and Project
    (the dashboard's per-project widget)."""
    assert 'Metrics(dimensions={"Project": self.pipeline.project})' in (ROOT / "handler" / "sweeper.py").read_text()
    metrics = observability.Metrics(dimensions={"Project": "staging"})
    metrics.add("LiveKitListFailures", 1)
    metrics.flush()
    emitted = json.loads(capsys.readouterr().out)
    (directive,) = emitted["_aws"]["CloudWatchMetrics"]
    assert directive["Dimensions"] == [["service", "Project"], ["service"]] and emitted["Project"] == "staging"
    alarm = resources["LiveKitRefusedTheSweeperAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (directive["Namespace"], "LiveKitListFailures")
    assert [d["Name"] for d in alarm["Dimensions"]] in directive["Dimensions"]
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert '{Switchboard,Project,service} MetricName=\\"LiveKitListFailures\\"' in body


def test_the_projects_come_from_the_secret_and_no_parameter_holds_a_key(template):
    described = template["Parameters"]["LiveKitSecretArn"]["Description"]
    assert "SWITCHBOARD_PROJECTS" in described
    for name in template["Parameters"]:
        assert not re.search(r"project|key|secret", name, re.I) or name == "LiveKitSecretArn", name
