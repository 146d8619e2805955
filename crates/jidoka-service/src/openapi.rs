//! The OpenAPI 3.0 document of the HTTP API, served at `GET /openapi.json`. A test checks that
//! it names exactly the routes of [`crate::api::ROUTES`], and a schema-driven fuzzer
//! (`scripts/api-fuzz.sh`, schemathesis) calls every operation with generated input and fails
//! on any server error or undocumented status.

use crate::api::ROUTES;
use serde_json::{Value, json};

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}})
}

fn page_params(extra: Vec<Value>) -> Vec<Value> {
    let mut p = extra;
    p.push(query(
        "before",
        json!({"type": "integer", "format": "int64"}),
        "page cursor (`next_cursor` of the last page)",
    ));
    p.push(query("limit", json!({"type": "integer", "minimum": 1, "maximum": 10000}), "page size"));
    p
}

fn operation(method: &str, path: &str) -> Value {
    let ok = |description: &str, content: Value| json!({"description": description, "content": content});
    let json_any = json!({"application/json": {"schema": {"type": "object"}}});
    let (summary, params, body, success): (&str, Vec<Value>, Option<Value>, Value) = match (method, path) {
        ("GET", "/health") => (
            "Liveness: the store can be read",
            vec![],
            None,
            ok("healthy", json!({"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}})),
        ),
        ("GET", "/metrics") => (
            "Prometheus metrics (loopback or integrator/admin token)",
            vec![],
            None,
            ok("metrics", json!({"text/plain": {"schema": {"type": "string"}}})),
        ),
        ("POST", "/api/events") => (
            "Ingest one event or a batch; each is stored once, bad ones are named and the rest kept",
            vec![],
            Some(json!({"required": true, "content": {"application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/Event"},
                {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}
            ]}}}})),
            ok(
                "stored; per-event results",
                json!({"application/json": {"schema": {"$ref": "#/components/schemas/IngestResult"}}}),
            ),
        ),
        ("GET", "/api/events") => (
            "Events in log order after a sequence number",
            vec![
                query("after", json!({"type": "integer", "minimum": 0}), "log position"),
                query("limit", json!({"type": "integer", "minimum": 1, "maximum": 10000}), "page size"),
            ],
            None,
            ok("events", json_any.clone()),
        ),
        ("GET", "/api/events/{event_id}") => {
            ("One event", vec![path_param("event_id")], None, ok("the event", json_any.clone()))
        }
        ("GET", "/api/findings") => (
            "Findings, newest first, with filters",
            page_params(vec![
                query("verdict", json!({"type": "string", "enum": ["PASS", "REVIEW", "HOLD"]}), "verdict"),
                query("agent", json!({"type": "string"}), "agent name"),
                query("kind", json!({"type": "string"}), "finding kind"),
                query("vin", json!({"type": "string"}), "VIN"),
                query("station", json!({"type": "string"}), "station"),
            ]),
            None,
            ok("a page of findings", json_any.clone()),
        ),
        ("GET", "/api/findings/{finding_id}") => (
            "One finding; with its actions and similar past cases' resolution for roles that may read actions",
            vec![path_param("finding_id")],
            None,
            ok("the finding", json_any.clone()),
        ),
        ("GET", "/api/findings/{finding_id}/curve.svg") => (
            "A tightening finding's curve against its golden envelope",
            vec![path_param("finding_id")],
            None,
            ok("SVG", json!({"image/svg+xml": {"schema": {"type": "string"}}})),
        ),
        ("GET", "/api/actions") => (
            "Actions, newest first, with filters",
            page_params(vec![
                query(
                    "status",
                    json!({"type": "string", "enum": ["pending_approval", "approved", "rejected", "expired", "delivered", "dead_letter"]}),
                    "status",
                ),
                query("kind", json!({"type": "string"}), "action kind"),
            ]),
            None,
            ok("a page of actions", json_any.clone()),
        ),
        ("GET", "/api/actions/{action_id}") => {
            ("One action", vec![path_param("action_id")], None, ok("the action", json_any.clone()))
        }
        ("POST", "/api/actions/{action_id}/approve") | ("POST", "/api/actions/{action_id}/reject") => (
            if path.ends_with("approve") {
                "Approve a waiting action (roles per action kind or policy); a reason is required and goes into the audit record and the MES record"
            } else {
                "Reject a waiting action; a reason is required"
            },
            vec![path_param("action_id")],
            Some(
                json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}}}),
            ),
            ok("the action after the decision", json_any.clone()),
        ),
        ("POST", "/api/actions/acknowledge") => (
            "Acknowledge in bulk the waiting review requests of one finding kind (and station), with a reason audited on each; holds, NCRs and Andons are never decided in bulk",
            vec![],
            Some(
                json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Acknowledge"}}}}),
            ),
            ok("the reviews acknowledged, expired and skipped (with why), and whether more wait", json_any.clone()),
        ),
        ("GET", "/api/cases") => (
            "Open cases: the waiting actions about one problem grouped (a joint's cold start, a unit at a station, a drifting tool), HOLDs first",
            vec![],
            None,
            ok("the open cases, each with its findings and actions", json_any.clone()),
        ),
        ("POST", "/api/cases/{case_id}/decide") => (
            "Decide every waiting action of a case at once; refused whole if the case changed since it was shown",
            vec![path_param("case_id")],
            Some(
                json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CaseDecision"}}}}),
            ),
            ok("the actions decided", json_any.clone()),
        ),
        ("GET", "/api/audit") => (
            "Audit records in chain order, with their hashes",
            vec![
                query("after", json!({"type": "integer", "minimum": 0}), "last record seen"),
                query("limit", json!({"type": "integer", "minimum": 1, "maximum": 1000}), "page size"),
            ],
            None,
            ok("audit records", json_any.clone()),
        ),
        ("GET", "/api/status") => {
            ("Version, store counts, agents and their lag", vec![], None, ok("status", json_any.clone()))
        }
        ("POST", "/api/login") => (
            "Log in with a user's password; returns a session token for the Authorization header",
            vec![],
            Some(
                json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Login"}}}}),
            ),
            ok("a session", json!({"application/json": {"schema": {"$ref": "#/components/schemas/Session"}}})),
        ),
        ("GET", "/openapi.json") => ("This document", vec![], None, ok("OpenAPI 3.0", json_any.clone())),
        ("POST", "/api/logout") => (
            "End the login session whose token is in the Authorization header",
            vec![],
            None,
            ok("whether a session ended", json_any.clone()),
        ),
        ("GET", "/ready") => (
            "Readiness: 200 when the store reads and commits; 503 naming what is wrong",
            vec![],
            None,
            ok("ready", json_any.clone()),
        ),
        ("GET", "/api/master-data") => {
            ("The master data in force at the writer's position", vec![], None, ok("master data", json_any.clone()))
        }
        ("POST", "/api/master-data") => (
            "Release a master data change (rows by key, lots on and off hold, changes withdrawn); refused whole, each row named, when it does not hold together",
            vec![],
            Some(json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}})),
            ok("stored or duplicate, with its seq", json_any.clone()),
        ),
        ("GET", "/api/build-queue") => (
            "The build queue: the released work orders waiting for the line (the frozen head marked), the last units started, the disruptions in force and the newest re-sequencing plan",
            vec![query(
                "limit",
                json!({"type": "integer", "minimum": 0, "maximum": 2000}),
                "queued units shown (default 100)",
            )],
            None,
            ok("the build queue", json_any.clone()),
        ),
        ("POST", "/api/build-queue/disruptions") => (
            "Declare a build disruption (a part or option-specific equipment unavailable until a time, units on hold, a rush order, or the end of one); a re-sequencing proposal follows for a supervisor to approve",
            vec![],
            Some(json!({"required": true, "content": {"application/json": {"schema": {"type": "object",
                "required": ["disruption_id", "kind"],
                "properties": {"disruption_id": {"type": "string"},
                               "kind": {"type": "string", "enum": ["unavailable", "hold", "rush", "cleared"]},
                               "resource": {"type": "string"}, "from": {"type": "string", "format": "date-time"},
                               "until": {"type": "string", "format": "date-time"},
                               "vins": {"type": "array", "items": {"type": "string"}},
                               "rush": {"type": "object"}, "within_units": {"type": "integer", "minimum": 0},
                               "reason": {"type": "string"}}}}}})),
            ok("stored or duplicate, with its seq", json_any.clone()),
        ),
        ("GET", "/api/shortages") => (
            "The material forecast: per part at line side, the first unit short with every delivery on its promise, the probability of a stock-out within the urgent and the warning horizon, stock, supermarket, in transit and the supplier's delivery record; the riskiest first",
            vec![],
            None,
            ok("the material forecast", json_any.clone()),
        ),
        _ => ("", vec![], None, ok("ok", json_any.clone())),
    };
    let open = ROUTES.iter().any(|(m, p, perm)| *m == method && *p == path && perm.is_none());
    let mut op = json!({
        "summary": summary,
        "operationId": format!("{}{}", method.to_lowercase(), path.replace(['/', '{', '}', '.'], "_")),
        "parameters": params,
        "responses": {"200": success, "default": {"$ref": "#/components/responses/Error"}},
    });
    if let Some(b) = body {
        op["requestBody"] = b;
    }
    if method == "POST" && path == "/api/events" {
        // A single bad event is an error naming the field; a batch of only bad events keeps its
        // per-event results.
        op["responses"]["422"] = json!({"description": "nothing stored", "content": {"application/json": {"schema": {
            "oneOf": [{"$ref": "#/components/schemas/Error"}, {"$ref": "#/components/schemas/IngestResult"}]}}}});
        // Every event a redelivery of a stored source transaction with other content.
        op["responses"]["409"] = json!({"description": "nothing stored: conflicting redeliveries", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/IngestResult"}}}});
        op["responses"]["403"] = json!({"description": "the token may not write this event's source", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    }
    if !open {
        op["security"] = json!([{"bearer": []}]);
    }
    op
}

/// The document.
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, _) in ROUTES {
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[method.to_lowercase()] = operation(method, path);
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Jidoka", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Quality and execution agent for assembly plants: events in, findings and governed actions out."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "an error with a code, a message and, for bad input, the field",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}}}},
                "IngestResult": {"type": "object", "required": ["stored", "duplicates", "conflicts", "rejected", "results"],
                    "properties": {"stored": {"type": "integer"}, "duplicates": {"type": "integer"}, "conflicts": {"type": "integer"}, "rejected": {"type": "integer"},
                        "results": {"type": "array", "items": {"type": "object"}}}},
                "Login": {"type": "object", "additionalProperties": false, "required": ["user", "password"],
                    "properties": {"user": {"type": "string", "maxLength": 200}, "password": {"type": "string", "maxLength": 1024}}},
                "Session": {"type": "object", "required": ["token", "user", "role", "expires_in_s"],
                    "properties": {"token": {"type": "string"}, "user": {"type": "string"}, "role": {"type": "string"},
                        "expires_in_s": {"type": "integer"}}},
                "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}, "version": {"type": "string"}}},
                "CaseDecision": {"type": "object", "additionalProperties": false, "required": ["decision", "reason"],
                    "properties": {"decision": {"type": "string", "enum": ["approve", "reject"]},
                                   "reason": {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": "\\S"},
                                   "actions": {"type": "array", "items": {"type": "string"}}}},
                "Acknowledge": {"type": "object", "additionalProperties": false, "required": ["finding_kind", "reason"],
                    "properties": {"finding_kind": {"type": "string", "minLength": 1, "pattern": "\\S"},
                                   "station": {"type": "string"},
                                   "reason": {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": "\\S"},
                                   "limit": {"type": "integer", "minimum": 1, "maximum": 5000}}},
                "Decision": {"type": "object", "additionalProperties": false, "required": ["reason"],
                    "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 2000, "pattern": "\\S"}}},
                "Event": {"type": "object", "required": ["source", "source_txn_id", "occurred_at", "kind", "data"],
                    "properties": {
                        "event_id": {"type": "string"},
                        "source": {"type": "string", "minLength": 1},
                        "source_txn_id": {"type": "string", "minLength": 1},
                        "correlation_id": {"type": "string"},
                        "occurred_at": {"type": "string", "format": "date-time"},
                        "kind": {"type": "string", "enum": jidoka_model::EventKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>()},
                        "data": {"type": "object"}
                    }}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_every_route_and_its_security() {
        let doc = document();
        for (method, path, perm) in ROUTES {
            let op = &doc["paths"][*path][method.to_lowercase()];
            assert!(op.is_object(), "{method} {path} missing from the document");
            assert!(!op["summary"].as_str().unwrap_or("").is_empty(), "{method} {path} has no summary");
            assert_eq!(op.get("security").is_some(), perm.is_some(), "{method} {path} security");
        }
        let operations: usize =
            doc["paths"].as_object().map_or(0, |p| p.values().map(|v| v.as_object().map_or(0, |o| o.len())).sum());
        assert_eq!(operations, ROUTES.len(), "no operation without a route");
    }
}
