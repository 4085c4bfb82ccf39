//! The OpenAPI document, written as data beside the routes (a proc-macro
//! generator would cost more compile time than these few routes are worth;
//! `tests/suite/api.rs` checks that every route of the router is documented),
//! and a self-contained page that renders it (no CDN, no external script).

use serde_json::{json, Value};

/// Every documented (method, path), also used by the test that compares the
/// document with the router.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
    ("post", "/api/v1/investigate"),
    ("get", "/api/v1/investigations/{id}"),
    ("post", "/api/v1/investigations/{id}/messages"),
    ("post", "/api/v1/investigations/{id}/resume"),
    ("post", "/api/v1/investigations/{id}/feedback"),
    ("get", "/api/v1/evidence/{id}"),
    ("get", "/api/v1/evidence/{id}/{item}"),
    ("post", "/api/v1/query-agent"),
];

fn problem_responses() -> Value {
    let problem = json!({"description": "A problem (RFC 9457)", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
    json!({
        "400": problem, "401": problem, "404": problem, "413": problem, "429": problem,
    })
}

fn op(summary: &str, body: Option<&str>, ok: Value, params: &[&str]) -> Value {
    let mut responses = problem_responses();
    if let (Value::Object(map), Value::Object(ok)) = (&mut responses, ok) {
        for (k, v) in ok {
            map.insert(k, v);
        }
    }
    let mut op = json!({
        "summary": summary,
        "responses": responses,
        "security": [{"bearer": []}],
        "parameters": params.iter().map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}})).collect::<Vec<_>>(),
    });
    if let (Some(schema), Value::Object(map)) = (body, &mut op) {
        map.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
        );
    }
    op
}

fn open(summary: &str, content_type: &str) -> Value {
    json!({"summary": summary, "responses": {"200": {"description": "OK", "content": {content_type: {}}}}})
}

pub fn openapi() -> Value {
    let answer = json!({"200": {"description": "The answer (or, with stream, text/event-stream: investigation, model_called, tool_started, tool_finished, finished, report)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Answer"}}, "text/event-stream": {}}}, "202": {"description": "Accepted (async): poll the url", "content": {"application/json": {}}}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "investigator",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Investigates production problems for squads, read-only and audited. Authenticate with `Authorization: Bearer <key>`; keys belong to squads in squads.yaml. Another squad's investigation answers 404."
        },
        "paths": {
            "/healthz": {"get": open("Liveness", "application/json")},
            "/readyz": {"get": open("Readiness: the store (503 when it fails) and each source's health", "application/json")},
            "/metrics": {"get": open("Prometheus metrics", "text/plain")},
            "/openapi.json": {"get": open("This document", "application/json")},
            "/docs": {"get": open("This document as a page", "text/html")},
            "/api/v1/investigate": {"post": op("Start an investigation", Some("InvestigateRequest"), answer.clone(), &[])},
            "/api/v1/investigations/{id}": {"get": op("An investigation: status, the latest synthesis, all evidence, every question", None, json!({"200": {"description": "OK"}}), &["id"])},
            "/api/v1/investigations/{id}/messages": {"post": op("Ask a follow-up in the same investigation", Some("FollowUpRequest"), answer, &["id"])},
            "/api/v1/investigations/{id}/resume": {"post": op("Ask an interrupted investigation's question again (async)", None, json!({"202": {"description": "Accepted"}, "409": {"description": "Not interrupted"}}), &["id"])},
            "/api/v1/investigations/{id}/feedback": {"post": op("Rate the investigation's answer: 1 helpful, -1 wrong, with an optional comment", Some("FeedbackRequest"), json!({"201": {"description": "Recorded"}}), &["id"])},
            "/api/v1/evidence/{id}": {"get": op("All evidence of an investigation, whole, with attachment files", None, json!({"200": {"description": "OK"}}), &["id"])},
            "/api/v1/evidence/{id}/{item}": {"get": op("One evidence item (E3); ?format=json or ?format=csv downloads the file", None, json!({"200": {"description": "OK"}}), &["id", "item"])},
            "/api/v1/query-agent": {"post": op("Text-to-SQL over a granted SQL source (needs ANTHROPIC_API_KEY; 501 without)", Some("QueryAgentRequest"), json!({"200": {"description": "sql, explanation, columns, rows"}, "501": {"description": "No model configured"}}), &[])},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {"type": "object", "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "detail": {"type": "string"}}},
                "InvestigateRequest": {
                    "type": "object", "additionalProperties": false, "required": ["query"],
                    "properties": {
                        "query": {"type": "string", "maxLength": 4000},
                        "context": {"type": "object", "additionalProperties": false, "properties": {
                            "environment": {"type": "string"},
                            "time_range": {"type": "object", "additionalProperties": false, "required": ["start", "end"], "properties": {"start": {"type": "string", "format": "date-time"}, "end": {"type": "string", "format": "date-time"}}},
                            "services": {"type": "array", "items": {"type": "string"}, "maxItems": 50}
                        }},
                        "stream": {"type": "boolean", "description": "Server-Sent Events with progress"},
                        "async": {"type": "boolean", "description": "202 and a URL to poll"}
                    }
                },
                "FollowUpRequest": {"type": "object", "additionalProperties": false, "required": ["message"], "properties": {"message": {"type": "string"}, "stream": {"type": "boolean"}, "async": {"type": "boolean"}}},
                "FeedbackRequest": {"type": "object", "additionalProperties": false, "required": ["rating"], "properties": {"rating": {"type": "integer", "enum": [-1, 1]}, "comment": {"type": "string", "maxLength": 2000}}},
                "QueryAgentRequest": {"type": "object", "additionalProperties": false, "required": ["prompt", "dataset_id"], "properties": {"prompt": {"type": "string"}, "dataset_id": {"type": "string", "description": "A source name from sources.yaml granted to the key's squad"}}},
                "Answer": {
                    "type": "object",
                    "properties": {
                        "investigation_id": {"type": "string"},
                        "status": {"type": "string"},
                        "synthesis": {"type": "object", "properties": {
                            "root_cause": {"type": "string"},
                            "timeline": {"type": "string"},
                            "affected_components": {"type": "array", "items": {"type": "string"}},
                            "recommended_actions": {"type": "array", "items": {"type": "string"}},
                            "confidence": {"type": "string", "enum": ["low", "medium", "high"]}
                        }},
                        "evidence": {"type": "object", "description": "By source kind: lists of evidence summaries with their url", "additionalProperties": {"type": "array"}},
                        "usage": {"type": "object"},
                        "report": {"type": "object", "description": "The structured findings, each claim citing evidence ids"}
                    }
                }
            }
        }
    })
}

/// Renders /openapi.json with a few lines of inline script.
pub const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>investigator API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
code,pre{font-family:ui-monospace,monospace;font-size:13px}
pre{background:#f5f5f5;padding:.75rem;overflow:auto}
.op{border-top:1px solid #ddd;padding:.5rem 0}
.m{display:inline-block;min-width:3.5rem;font-weight:bold;text-transform:uppercase}
.post{color:#0a6}.get{color:#06c}
</style></head><body>
<h1>investigator API</h1>
<p id="desc"></p>
<p>The machine-readable document is <a href="/openapi.json">/openapi.json</a>.</p>
<div id="ops">Loading…</div>
<h2>Schemas</h2><div id="schemas"></div>
<script>
fetch('/openapi.json').then(r=>r.json()).then(doc=>{
  const esc=s=>String(s).replace(/[&<>]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;'}[c]));
  document.getElementById('desc').textContent=doc.info.description;
  let html='';
  for(const [path,ops] of Object.entries(doc.paths)){
    for(const [method,op] of Object.entries(ops)){
      const codes=Object.keys(op.responses||{}).join(' ');
      const body=op.requestBody?' — body: <code>'+esc(op.requestBody.content['application/json'].schema['$ref'].split('/').pop())+'</code>':'';
      html+='<div class="op"><span class="m '+method+'">'+method+'</span> <code>'+esc(path)+'</code><br>'+esc(op.summary)+body+'<br><small>responses: '+esc(codes)+'</small></div>';
    }
  }
  document.getElementById('ops').innerHTML=html;
  let s='';
  for(const [name,schema] of Object.entries(doc.components.schemas)){
    s+='<h3>'+esc(name)+'</h3><pre>'+esc(JSON.stringify(schema,null,2))+'</pre>';
  }
  document.getElementById('schemas').innerHTML=s;
}).catch(e=>{document.getElementById('ops').textContent='could not load /openapi.json: '+e});
</script></body></html>
"#;
