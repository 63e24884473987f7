// reflow's Conductor-compatible /api through the official Conductor JavaScript SDK
// (@io-orkes/conductor-javascript).
//
// Run by tests/tests/suite/conductor_sdk.rs as `node sdk_node.mjs PLAN`, PLAN being the same JSON
// as sdk_python.py's: {server, token, out, models, workflows: [{id, includeTasks}], statuses: [id],
// retry}.
//
// It writes one JSON document to PLAN.out: the SDK's name and version; when PLAN.models is true,
// the SDK's models as its TypeScript declarations (dist/index.d.ts, read with the TypeScript
// compiler) declare them (every type reachable from Workflow and WorkflowStatus: each key with its
// declared type, which keys are required, the string literals a status allows); and every call
// made with what the SDK returned. The SDK checks nothing at run time (its models are types
// only), so the test compares reflow's JSON with these declarations. Any call that throws exits
// non-zero, the reason on stderr.
//
// reflow takes the operator token as `Authorization: Bearer` only (the SDK's own
// `X-Authorization` comes from a `/token` exchange reflow does not have), so the token travels as
// a header of the client's config (setConfig).

import { writeFileSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

import ts from "typescript";
import {
  orkesConductorClient,
  WorkflowExecutor,
  noopLogger,
} from "@io-orkes/conductor-javascript";

const require = createRequire(import.meta.url);
const PACKAGE = "@io-orkes/conductor-javascript";

/** The SDK's declared types, from its own .d.ts, as plain JSON. */
function declaredModels(dir, roots) {
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  const entry = join(dir, pkg.exports["."].types);
  const program = ts.createProgram([entry], { noEmit: true, strict: false, skipLibCheck: true });
  const checker = program.getTypeChecker();
  const module = checker.getSymbolAtLocation(program.getSourceFile(entry));
  const exports = new Map(checker.getExportsOfModule(module).map((s) => [s.name, s]));
  const models = {};

  const describe = (t) => {
    const sdk = checker.typeToString(t);
    if (t.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return { kind: "any", sdk };
    if (t.isUnion()) {
      const parts = t.types.filter((u) => !(u.flags & (ts.TypeFlags.Undefined | ts.TypeFlags.Null)));
      if (parts.every((u) => u.flags & ts.TypeFlags.BooleanLiteral)) return { kind: "boolean", sdk };
      if (parts.every((u) => u.isStringLiteral()))
        return { kind: "string", enum: parts.map((u) => u.value), sdk };
      if (parts.length === 1) return describe(parts[0]);
      return { kind: "union", of: parts.map(describe), sdk };
    }
    if (t.flags & ts.TypeFlags.NumberLike) return { kind: "number", sdk };
    if (t.flags & ts.TypeFlags.StringLike) return { kind: "string", sdk };
    if (t.flags & ts.TypeFlags.BooleanLike) return { kind: "boolean", sdk };
    if (checker.isArrayType(t)) return { kind: "array", of: describe(checker.getTypeArguments(t)[0]), sdk };
    if (t.flags & ts.TypeFlags.Object) {
      const props = checker.getPropertiesOfType(t);
      const index = checker.getIndexTypeOfType(t, ts.IndexKind.String);
      if (props.length === 0 && index) return { kind: "map", of: describe(index), sdk };
      if (props.length === 0) return { kind: "any", sdk };
      const name = t.aliasSymbol?.name ?? (t.symbol && t.symbol.name !== "__type" ? t.symbol.name : sdk);
      addModel(name, t);
      return { kind: "model", model: name, sdk };
    }
    return { kind: "any", sdk };
  };

  const addModel = (name, t) => {
    if (name in models) return;
    const model = { keys: {}, required: [] };
    models[name] = model;
    for (const p of checker.getPropertiesOfType(t)) {
      const decl = p.valueDeclaration ?? p.declarations?.[0];
      model.keys[p.name] = describe(checker.getTypeOfSymbolAtLocation(p, decl));
      if (!(p.flags & ts.SymbolFlags.Optional)) model.required.push(p.name);
    }
  };

  for (const root of roots) {
    let symbol = exports.get(root);
    if (!symbol) throw new Error(`${PACKAGE} exports no type ${root}`);
    if (symbol.flags & ts.SymbolFlags.Alias) symbol = checker.getAliasedSymbol(symbol);
    addModel(root, checker.getDeclaredTypeOfSymbol(symbol));
  }
  return models;
}

async function main() {
  const plan = JSON.parse(process.argv[2]);
  // The package exports no ./package.json: its root is one up from its main file (dist/).
  const dir = join(dirname(require.resolve(PACKAGE)), "..");
  const { version } = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  // Reading the declarations takes seconds: only when asked.
  const models = plan.models ? declaredModels(dir, ["Workflow", "WorkflowStatus"]) : null;
  const result = { sdk: PACKAGE, version, models, calls: [] };

  const client = await orkesConductorClient({ serverUrl: plan.server, logger: noopLogger });
  if (plan.token) client.setConfig({ headers: { Authorization: `Bearer ${plan.token}` } });
  const executor = new WorkflowExecutor(client);

  const call = async (name, model, fn, args) => {
    let got;
    try {
      got = await fn();
    } catch (e) {
      throw new Error(`${name}(${JSON.stringify(args)}) failed: ${e?.stack ?? e}`);
    }
    if (model !== null && (got === null || typeof got !== "object"))
      throw new Error(`${name}(${JSON.stringify(args)}) returned ${JSON.stringify(got)}, not a ${model}`);
    result.calls.push({ call: name, ...args, model, result: got ?? null });
  };

  for (const { id, includeTasks } of plan.workflows ?? []) {
    await call("WorkflowExecutor.getWorkflow", "Workflow", () => executor.getWorkflow(id, includeTasks), {
      id,
      includeTasks,
    });
  }
  for (const id of plan.statuses ?? []) {
    for (const flag of [true, false]) {
      await call(
        "WorkflowExecutor.getWorkflowStatus",
        "WorkflowStatus",
        () => executor.getWorkflowStatus(id, flag, flag),
        { id, includeOutput: flag, includeVariables: flag },
      );
    }
  }
  if (plan.retry) {
    const id = plan.retry;
    await call("WorkflowExecutor.retry", null, () => executor.retry(id, false), { id });
  }
  client.stopBackgroundRefresh?.();
  writeFileSync(plan.out, JSON.stringify(result));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e?.stack ?? String(e));
    process.exit(1);
  },
);
