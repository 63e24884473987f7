"""reflow's Conductor-compatible /api through the official Conductor Python SDK (conductor-python).

Run by tests/tests/suite/conductor_sdk.rs as `python sdk_python.py PLAN`, PLAN being JSON:

    {"server": "http://127.0.0.1:PORT/api", "token": "<operator token>" or null,
     "out": "<file to write the results to>", "models": true,
     "workflows": [{"id": "diarization-…", "includeTasks": true}, …],
     "statuses": ["diarization-…", …],
     "retry": "diarization-…" or null}

It writes one JSON document to PLAN.out: the SDK's name and version; when PLAN.models is true,
the SDK's models as its attribute maps declare them (every model reachable from Workflow and
WorkflowStatus: each JSON key with its declared type, and the values a status setter allows); and
every call made, with what the SDK deserialized turned back into JSON through the same attribute
maps. It exits non-zero, the reason on stderr, when a call raises, when the SDK deserializes
nothing (it logs a model that does not fit and returns None) or when the SDK logs an error.

reflow takes the operator token as `Authorization: Bearer` only (the SDK's own `X-Authorization`
comes from a `/token` exchange reflow does not have), so the token travels as the SDK's default
header (ApiClient's header_name/header_value).
"""

import ast
import importlib.metadata
import inspect
import json
import logging
import re
import sys
import textwrap

from conductor.client.configuration.configuration import Configuration
from conductor.client.http import models as http_models
from conductor.client.http.api.workflow_resource_api import WorkflowResourceApi
from conductor.client.http.api_client import ApiClient
from conductor.client.orkes.orkes_workflow_client import OrkesWorkflowClient

PRIMITIVES = {
    "int": "integer",
    "long": "integer",
    "float": "number",
    "str": "string",
    "bool": "boolean",
    "object": "any",
    "date": "string",
    "datetime": "string",
}


class Errors(logging.Handler):
    """Every ERROR the SDK logs (a model it could not build is logged, then None returned)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(self.format(record))


def allowed_values(cls, attr):
    """The `allowed_values` list a generated property setter checks, if it has one."""
    prop = inspect.getattr_static(cls, attr, None)
    if not isinstance(prop, property) or prop.fset is None:
        return None
    try:
        source = textwrap.dedent(inspect.getsource(prop.fset))
    except (OSError, TypeError):
        return None
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "allowed_values" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    return None


def describe(sdk_type, models):
    """A swagger type string (`int`, `list[Task]`, `dict(str, object)`, `WorkflowDef`) as JSON."""
    if sdk_type in PRIMITIVES:
        return {"kind": PRIMITIVES[sdk_type], "sdk": sdk_type}
    m = re.fullmatch(r"(list|set)\[(.*)\]", sdk_type)
    if m:
        return {"kind": "array", "of": describe(m.group(2), models), "sdk": sdk_type}
    m = re.fullmatch(r"dict\(([^,]*), (.*)\)", sdk_type)
    if m:
        return {"kind": "map", "of": describe(m.group(2), models), "sdk": sdk_type}
    add_model(sdk_type, models)
    return {"kind": "model", "model": sdk_type, "sdk": sdk_type}


def add_model(name, models):
    if name in models:
        return
    cls = getattr(http_models, name, None)
    if cls is None or not getattr(cls, "swagger_types", None):
        # The SDK keeps such a value as it came (no attribute map to check it against).
        models[name] = None
        return
    models[name] = {"keys": {}, "required": []}
    keys = {}
    for attr, sdk_type in cls.swagger_types.items():
        d = describe(sdk_type, models)
        values = allowed_values(cls, attr)
        if values is not None:
            d["enum"] = values
        keys[cls.attribute_map[attr]] = d
    models[name]["keys"] = keys


def wire(obj):
    """What the SDK deserialized, as JSON again: models through their attribute maps."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [wire(x) for x in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(wire(x) for x in obj)
    if isinstance(obj, dict):
        return {k: wire(v) for k, v in obj.items()}
    if hasattr(obj, "swagger_types") and hasattr(obj, "attribute_map"):
        out = {}
        for attr in obj.swagger_types:
            value = getattr(obj, attr)
            if value is not None:
                out[obj.attribute_map[attr]] = wire(value)
        return out
    raise TypeError(f"cannot turn {type(obj).__name__} back into JSON")


def main():
    plan = json.loads(sys.argv[1])
    errors = Errors()
    logging.getLogger().addHandler(errors)

    models = None
    if plan.get("models"):
        models = {}
        for root in ("Workflow", "WorkflowStatus"):
            add_model(root, models)
    result = {
        "sdk": "conductor-python",
        "version": importlib.metadata.version("conductor-python"),
        "models": models,
        "calls": [],
    }

    config = Configuration(server_api_url=plan["server"])
    header = ("Authorization", f"Bearer {plan['token']}") if plan.get("token") else (None, None)
    # The generated resource API, on an ApiClient that sends the token as a default header.
    resource = WorkflowResourceApi(ApiClient(config, header_name=header[0], header_value=header[1]))
    # The high-level client the SDK's docs start from; its ApiClient is its own.
    client = OrkesWorkflowClient(config)
    if header[0]:
        client.api_client.default_headers[header[0]] = header[1]

    def call(name, model, fn, **args):
        try:
            got = fn()
        except Exception as e:  # noqa: BLE001 — any failure of the SDK fails the test
            body = getattr(e, "body", None)
            raise SystemExit(f"{name}({args}) failed: {type(e).__name__}: {e} {body or ''}")
        if model is not None and got is None:
            raise SystemExit(f"{name}({args}) deserialized nothing (see the SDK's log above)")
        if model is not None and type(got).__name__ != model:
            raise SystemExit(f"{name}({args}) returned a {type(got).__name__}, not a {model}")
        result["calls"].append({"call": name, **args, "model": model, "result": wire(got)})

    for w in plan.get("workflows", []):
        wid, tasks = w["id"], w["includeTasks"]
        if tasks:
            call(
                "OrkesWorkflowClient.get_workflow",
                "Workflow",
                lambda: client.get_workflow(wid, include_tasks=True),
                id=wid,
                includeTasks=True,
            )
        else:
            # get_workflow leaves includeTasks out when false (reflow's default is true), so
            # the generated API it wraps sends it.
            call(
                "WorkflowResourceApi.get_execution_status",
                "Workflow",
                lambda: resource.get_execution_status(wid, include_tasks=False),
                id=wid,
                includeTasks=False,
            )
    for wid in plan.get("statuses", []):
        call(
            "OrkesWorkflowClient.get_workflow_status",
            "WorkflowStatus",
            lambda: client.get_workflow_status(wid, include_output=True, include_variables=True),
            id=wid,
            includeOutput=True,
            includeVariables=True,
        )
        call(
            "WorkflowResourceApi.get_workflow_status_summary",
            "WorkflowStatus",
            lambda: resource.get_workflow_status_summary(wid),
            id=wid,
            includeOutput=False,
            includeVariables=False,
        )
    if plan.get("retry"):
        wid = plan["retry"]
        call(
            "OrkesWorkflowClient.retry_workflow",
            None,
            lambda: client.retry_workflow(wid, resume_subworkflow_tasks=False),
            id=wid,
        )

    if errors.records:
        raise SystemExit("the SDK logged errors:\n" + "\n".join(errors.records))
    with open(plan["out"], "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
