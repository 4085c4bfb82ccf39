//! The Kubernetes source against an in-process fake API server: a kubeconfig with
//! two contexts (bearer tokens) pointing at it, list responses in the API's own
//! shapes (pods with container statuses, core/v1 events, apps/v1 deployments and
//! owned replicasets, autoscaling/v2 HPAs, nodes), pod logs as text with
//! timestamps, and Status bodies for errors. It records every path so the test
//! sees that only GETs on granted namespaces were made and no secret was read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use investigator::engine::CallError;
use investigator::evidence::Content;
use investigator::sources::{CallContext, Error as SourceError, ToolOutput};
use serde_json::{json, Value};

use super::common::{parse_config, Harness};

#[derive(Default)]
pub(super) struct Seen {
    pub(super) requests: Vec<String>,
    pub(super) violations: Vec<String>,
}

pub(super) type Shared = Arc<Mutex<Seen>>;

pub(super) fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn list(kind: &str, items: Vec<Value>) -> Response {
    Json(json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})).into_response()
}

async fn api(
    State(seen): State<Shared>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let path = uri.path().to_string();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    {
        let mut s = lock(&seen);
        s.requests.push(format!("{method} {path}"));
        if method != Method::GET {
            s.violations.push(format!("{method} {path}"));
        }
        if path.contains("secrets") || path.contains("configmaps") {
            s.violations.push(format!("read {path}"));
        }
    }
    let cluster = match auth.as_str() {
        "Bearer prod-token" => "prod",
        "Bearer staging-token" => "staging",
        _ => {
            return (StatusCode::UNAUTHORIZED, Json(json!({"kind": "Status", "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401}))).into_response();
        }
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["version"] => Json(json!({"major": "1", "minor": "30", "gitVersion": format!("v1.30.2-{cluster}")})).into_response(),
        ["api", "v1", "nodes"] => list("NodeList", vec![
            json!({"metadata": {"name": "node-a"}, "spec": {}, "status": {"nodeInfo": {"kubeletVersion": "v1.30.2"}, "conditions": [
                {"type": "MemoryPressure", "status": "True", "reason": "KubeletHasInsufficientMemory", "message": "kubelet has insufficient memory available"},
                {"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}),
        ]),
        ["api", "v1", "namespaces", ns, "pods"] => {
            if q.get("labelSelector").map(String::as_str) == Some("app=checkout")
                || !q.contains_key("labelSelector") {
                list("PodList", vec![json!({
                    "metadata": {"name": "checkout-7d9f-abc", "namespace": ns},
                    "spec": {"nodeName": "node-a"},
                    "status": {"phase": "Running", "startTime": "2024-05-01T09:00:00Z", "containerStatuses": [
                        {"name": "app", "ready": false, "restartCount": 7, "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": "2024-05-01T10:11:00Z"}}},
                        {"name": "sidecar", "ready": true, "restartCount": 0, "state": {"running": {}}}
                    ]}
                })])
            } else {
                list("PodList", vec![])
            }
        }
        ["api", "v1", "namespaces", ns, "pods", "checkout-7d9f-abc"] => Json(json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "checkout-7d9f-abc", "namespace": ns, "ownerReferences": [{"kind": "ReplicaSet", "name": "checkout-7d9f"}]},
            "spec": {"nodeName": "node-a", "containers": [{
                "name": "app", "image": "registry/checkout:1.42",
                "env": [{"name": "DB_PASSWORD", "value": "hunter2-in-env"}, {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "checkout-secrets", "key": "token"}}}],
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 10, "periodSeconds": 5, "failureThreshold": 3}
            }]},
            "status": {"phase": "Running", "qosClass": "Burstable", "startTime": "2024-05-01T09:00:00Z",
                "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": "2024-05-01T10:11:00Z"}],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 7, "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": "2024-05-01T10:11:00Z"}}}]}
        })).into_response(),
        ["api", "v1", "namespaces", _ns, "events"] if q.get("fieldSelector").is_some_and(|f| f.starts_with("involvedObject.name=")) => list("EventList", vec![
            json!({"type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container app", "count": 12, "lastTimestamp": "2024-05-01T10:12:00Z", "involvedObject": {"kind": "Pod", "name": "checkout-7d9f-abc"}, "metadata": {"name": "e2"}}),
            json!({"type": "Warning", "reason": "OOMKilling", "message": "Memory cgroup out of memory: Killed process 4242 (java)", "count": 7, "lastTimestamp": "2024-05-01T10:11:00Z", "involvedObject": {"kind": "Pod", "name": "checkout-7d9f-abc"}, "metadata": {"name": "e3"}}),
        ]),
        ["api", "v1", "namespaces", _ns, "events"] => list("EventList", vec![
            json!({"type": "Normal", "reason": "Pulled", "message": "Container image pulled", "count": 1, "lastTimestamp": "2024-05-01T10:00:00Z", "involvedObject": {"kind": "Pod", "name": "checkout-7d9f-abc"}, "metadata": {"name": "e1"}}),
            json!({"type": "Warning", "reason": "BackOff", "message": "Back-off restarting failed container app", "count": 12, "lastTimestamp": "2024-05-01T10:12:00Z", "involvedObject": {"kind": "Pod", "name": "checkout-7d9f-abc"}, "metadata": {"name": "e2"}}),
        ]),
        ["api", "v1", "namespaces", _ns, "pods", "ledger-json-1", "log"] => {
            // A service logging JSON (zap's encoder): the cause is in a field.
            let mut text = String::new();
            for i in 0..60 {
                text.push_str(&format!(
                    "2024-05-01T10:10:{:02}.000000000Z {{\"level\":\"info\",\"ts\":1714558200.{i},\"caller\":\"http/server.go:88\",\"msg\":\"request done\",\"status\":200,\"latency_ms\":{}}}\n",
                    i % 60,
                    i % 17
                ));
            }
            for i in 0..3 {
                text.push_str(&format!(
                    "2024-05-01T10:11:0{i}.000000000Z {{\"level\":\"error\",\"ts\":1714558260.{i},\"caller\":\"ledger/post.go:41\",\"msg\":\"posting failed\",\"order\":{},\"error\":\"dial tcp 10.0.4.{i}:5432: connect: connection refused\"}}\n",
                    7000 + i
                ));
            }
            text.push_str("2024-05-01T10:11:09.000000000Z {not json, a plain line that starts with a brace\n");
            text.into_response()
        }
        ["api", "v1", "namespaces", _ns, "pods", pod, "log"] => {
            if *pod != "checkout-7d9f-abc" {
                return (StatusCode::NOT_FOUND, Json(json!({"kind": "Status", "status": "Failure", "message": format!("pods \"{pod}\" not found"), "reason": "NotFound", "code": 404}))).into_response();
            }
            if q.get("tailLines").map(String::as_str) != Some("100") || q.get("timestamps").map(String::as_str) != Some("true") {
                lock(&seen).violations.push(format!("log query {q:?}"));
            }
            let mut text = String::new();
            for i in 0..98 {
                text.push_str(&format!("2024-05-01T10:10:{:02}.000000000Z INFO served request {i} in {} ms\n", i % 60, i % 40));
            }
            text.push_str("2024-05-01T10:10:59.000000000Z ERROR java.lang.OutOfMemoryError: Java heap space\n");
            text.push_str("2024-05-01T10:10:59.500000000Z ERROR java.lang.OutOfMemoryError: Java heap space\n");
            text.into_response()
        }
        ["apis", "apps", "v1", "namespaces", _ns, "deployments"] => list("DeploymentList", vec![json!({
            "metadata": {"name": "checkout", "uid": "d-1"},
            "status": {"conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}, {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]}
        })]),
        ["apis", "apps", "v1", "namespaces", _ns, "replicasets"] => list("ReplicaSetList", vec![
            json!({"metadata": {"name": "checkout-5c4b", "creationTimestamp": "2024-04-28T12:00:00Z", "annotations": {"deployment.kubernetes.io/revision": "3"}, "ownerReferences": [{"kind": "Deployment", "name": "checkout", "uid": "d-1"}]},
                   "spec": {"replicas": 0, "template": {"spec": {"containers": [{"name": "app", "image": "registry/checkout:1.41"}]}}}, "status": {"readyReplicas": 0}}),
            json!({"metadata": {"name": "checkout-7d9f", "creationTimestamp": "2024-05-01T09:00:00Z", "annotations": {"deployment.kubernetes.io/revision": "4"}, "ownerReferences": [{"kind": "Deployment", "name": "checkout", "uid": "d-1"}]},
                   "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app", "image": "registry/checkout:1.42"}]}}}, "status": {"readyReplicas": 1}}),
            json!({"metadata": {"name": "other-1", "annotations": {"deployment.kubernetes.io/revision": "9"}, "ownerReferences": [{"kind": "Deployment", "name": "other", "uid": "d-2"}]}, "spec": {}, "status": {}}),
        ]),
        ["apis", "autoscaling", "v2", "namespaces", _ns, "horizontalpodautoscalers"] => list("HorizontalPodAutoscalerList", vec![json!({
            "metadata": {"name": "checkout"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "checkout"}, "minReplicas": 2, "maxReplicas": 3},
            "status": {"currentReplicas": 3, "desiredReplicas": 3, "conditions": [{"type": "ScalingLimited", "status": "True", "reason": "TooManyReplicas", "message": "the desired replica count is more than the maximum replica count"}]}
        })]),
        _ => (StatusCode::NOT_FOUND, Json(json!({"kind": "Status", "message": "the server could not find the requested resource", "reason": "NotFound", "code": 404}))).into_response(),
    }
}

pub(super) async fn start() -> (Shared, String) {
    let seen: Shared = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new().fallback(api).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (seen, format!("http://{addr}"))
}

/// The health detail names both fake clusters' versions (each by its own token).
fn both_clusters_answered(health: &investigator::sources::Health) {
    for version in [
        "prod: Kubernetes v1.30.2-prod",
        "staging: Kubernetes v1.30.2-staging",
    ] {
        assert!(health.detail.contains(version), "{health:?}");
    }
}

/// A kubeconfig with contexts `prod` and `staging` (bearer tokens) on the fake.
pub(super) fn write_kubeconfig(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: prod\nclusters:\n- name: prod\n  cluster:\n    server: {url}\n- name: staging\n  cluster:\n    server: {url}\nusers:\n- name: prod-reader\n  user:\n    token: prod-token\n- name: staging-reader\n  user:\n    token: staging-token\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    user: prod-reader\n- name: staging\n  context:\n    cluster: staging\n    user: staging-reader\n"
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, kubeconfig).expect("write");
    path
}

const SQUADS: &str = r#"
squads:
  payment:
    members:
      slack: [U_PAY]
    grants:
      - source: k8s
        namespaces: [payments]
        contexts: [prod]
  ops:
    members:
      slack: [U_OPS]
    grants:
      - source: k8s
"#;

async fn call(h: &Harness, user: &str, tool: &str, args: Value) -> Result<ToolOutput, CallError> {
    h.gate
        .call(&h.access(user), "k8s", tool, &args, &CallContext::default())
        .await
        .result
}

fn table_of(output: &ToolOutput) -> &investigator::evidence::Table {
    match &output.content {
        Content::Table(t) => t,
        other => panic!("expected a table, got {other:?}"),
    }
}

#[tokio::test]
async fn kubernetes_reads_granted_namespaces_only() {
    let (seen, url) = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_kubeconfig(dir.path(), &url);
    let sources = format!(
        "data_sources:\n  kubernetes:\n    name: k8s\n    kubeconfig_path: \"{}\"\n    contexts: [prod, staging]\n",
        path.display()
    );
    let h = Harness::new(parse_config(&sources, SQUADS)).await;
    let health = h.source("k8s").health().await;
    assert!(health.ok, "{health:?}");
    both_clusters_answered(&health);

    let out = call(
        &h,
        "U_PAY",
        "pods",
        json!({"namespace": "payments", "label_selector": "app=checkout"}),
    )
    .await
    .expect("pods");
    let t = table_of(&out);
    assert_eq!(t.rows.len(), 1);
    // Every result says how to check it at its source.
    assert_eq!(
        out.note.as_deref(),
        Some("check at the source: kubectl --context prod -n payments get pods -l app=checkout -o wide")
    );
    assert_eq!(t.rows[0][2], json!("1/2"));
    assert_eq!(t.rows[0][3], json!(7));
    let why = t.rows[0][4].as_str().unwrap_or("");
    assert!(why.contains("CrashLoopBackOff"), "{why}");

    let out = call(
        &h,
        "U_PAY",
        "describe_pod",
        json!({"namespace": "payments", "pod": "checkout-7d9f-abc"}),
    )
    .await
    .expect("describe");
    let Content::Text(described) = &out.content else {
        panic!("text")
    };
    for needle in [
        "Image: registry/checkout:1.42",
        "State: waiting (CrashLoopBackOff)",
        "Last state: terminated (OOMKilled, exit 137) at 2024-05-01T10:11:00Z",
        "Ready: false, restarts: 7",
        "limits: memory=256Mi",
        "livenessProbe: http-get /healthz",
        "Controlled by: ReplicaSet/checkout-7d9f",
        "2024-05-01T10:12:00Z Warning BackOff (x12)",
        "OOMKilling",
    ] {
        assert!(described.contains(needle), "{needle} not in\n{described}");
    }
    assert!(
        described.find("BackOff (x12)") < described.find("OOMKilling"),
        "events newest first"
    );
    assert!(
        !described.contains("hunter2") && !described.contains("DB_PASSWORD"),
        "{described}"
    );
    assert_eq!(
        out.note.as_deref(),
        Some("check at the source: kubectl --context prod -n payments describe pod checkout-7d9f-abc")
    );

    let out = call(&h, "U_PAY", "events", json!({"namespace": "payments"}))
        .await
        .expect("events");
    assert_eq!(table_of(&out).rows[0][2], json!("BackOff"), "newest first");

    let out = call(
        &h,
        "U_PAY",
        "pod_logs",
        json!({"namespace": "payments", "pod": "checkout-7d9f-abc", "tail_lines": 100}),
    )
    .await
    .expect("logs");
    assert!(
        out.note.as_deref().is_some_and(|n| n.ends_with(
            "check at the source: kubectl --context prod -n payments logs checkout-7d9f-abc --tail=100 --timestamps"
        )),
        "{:?}",
        out.note
    );
    let Content::Json(v) = &out.content else {
        panic!("json")
    };
    assert_eq!(v["kind"], "log_hits");
    assert_eq!(v["hits"].as_array().map(Vec::len), Some(100));
    let oom = v["patterns"].as_array().into_iter().flatten().find(|p| {
        p["example"]
            .as_str()
            .unwrap_or("")
            .contains("OutOfMemoryError")
    });
    assert_eq!(oom.map(|p| p["count"].clone()), Some(json!(2)));

    // JSON lines: their own level and message, the other fields after it, so the cause
    // (`error`) is in the pattern; a line that only looks like JSON stays as it is.
    let out = call(
        &h,
        "U_PAY",
        "pod_logs",
        json!({"namespace": "payments", "pod": "ledger-json-1", "tail_lines": 100}),
    )
    .await
    .expect("json logs");
    let Content::Json(v) = &out.content else {
        panic!("json")
    };
    let hits = v["hits"].as_array().cloned().unwrap_or_default();
    assert_eq!(hits.len(), 64);
    assert_eq!(hits[0]["level"], "info");
    assert!(
        hits[0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("request done caller=http/server.go:88 status=200")),
        "{}",
        hits[0]
    );
    assert_eq!(hits[60]["level"], "error");
    assert_eq!(hits[63]["level"], "");
    assert_eq!(
        hits[63]["message"],
        "{not json, a plain line that starts with a brace"
    );
    let patterns = v["patterns"].as_array().cloned().unwrap_or_default();
    let failed = patterns
        .iter()
        .find(|p| {
            p["template"]
                .as_str()
                .unwrap_or("")
                .starts_with("posting failed")
        })
        .unwrap_or_else(|| panic!("{patterns:?}"));
    assert_eq!(failed["count"], json!(3));
    assert!(
        failed["template"]
            .as_str()
            .unwrap_or("")
            .contains("connect: connection refused"),
        "{failed}"
    );
    assert_eq!(patterns.len(), 3, "{patterns:?}");

    let out = call(&h, "U_PAY", "rollouts", json!({"namespace": "payments"}))
        .await
        .expect("rollouts");
    assert_eq!(
        out.note.as_deref(),
        Some("check at the source: kubectl --context prod -n payments get replicasets -o wide")
    );
    let t = table_of(&out);
    let revisions: Vec<(Value, Value)> = t
        .rows
        .iter()
        .map(|r| (r[1].clone(), r[4].clone()))
        .collect();
    assert_eq!(
        revisions,
        vec![
            (json!(4), json!("registry/checkout:1.42")),
            (json!(3), json!("registry/checkout:1.41"))
        ]
    );

    let out = call(&h, "U_PAY", "hpa", json!({"namespace": "payments"}))
        .await
        .expect("hpa");
    assert!(table_of(&out).rows[0][4]
        .as_str()
        .unwrap_or("")
        .contains("ScalingLimited=True"));

    // Refusals: another namespace, another context, nodes for a namespaced grant,
    // a name that is not a Kubernetes name.
    let before = lock(&seen).requests.len();
    for (tool, args) in [
        ("pods", json!({"namespace": "kube-system"})),
        (
            "pods",
            json!({"namespace": "payments", "context": "staging"}),
        ),
        ("nodes", json!({})),
    ] {
        let err = call(&h, "U_PAY", tool, args.clone())
            .await
            .expect_err("refused");
        assert!(
            matches!(err, CallError::Source(SourceError::Refused(_))),
            "{tool} {args}: {err}"
        );
    }
    let err = call(
        &h,
        "U_PAY",
        "pod_logs",
        json!({"namespace": "payments", "pod": "../secrets"}),
    )
    .await
    .expect_err("bad name");
    assert!(
        matches!(err, CallError::Source(SourceError::BadArguments { .. })),
        "{err}"
    );
    assert_eq!(
        lock(&seen).requests.len(),
        before,
        "refusals reach no cluster"
    );
    // The nodes tool is not even offered to the namespaced grant.
    let offered: Vec<String> = h
        .gate
        .tools_for(&h.access("U_PAY"))
        .into_iter()
        .map(|t| t.spec.name)
        .collect();
    assert!(!offered.iter().any(|n| n == "nodes"), "{offered:?}");

    // Unscoped ops: nodes, and the staging context with its own token.
    let out = call(&h, "U_OPS", "nodes", json!({})).await.expect("nodes");
    assert!(table_of(&out).rows[0][2]
        .as_str()
        .unwrap_or("")
        .contains("MemoryPressure"));
    call(
        &h,
        "U_OPS",
        "pods",
        json!({"namespace": "kube-system", "context": "staging"}),
    )
    .await
    .expect("staging");
    let err = call(
        &h,
        "U_OPS",
        "pod_logs",
        json!({"namespace": "payments", "pod": "gone-1"}),
    )
    .await
    .expect_err("404");
    assert!(err.to_string().contains("not found"), "{err}");

    assert!(
        lock(&seen).violations.is_empty(),
        "{:?}",
        lock(&seen).violations
    );
}

/// A kubeconfig as kubeadm, kind or minikube write it: the cluster's private CA
/// (inline or as a file) and a client certificate (inline `-data` or file paths),
/// against an API server that requires a client certificate from that CA.
#[tokio::test]
async fn kubernetes_over_mutual_tls_with_the_kubeconfig_ca_and_client_certificate() {
    use super::common::{tls_fixture, tls_front};
    use base64::Engine as _;

    let (seen, url) = start().await;
    let https = tls_front(&url, true).await;
    let b64 = |name: &str| {
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(tls_fixture(name)).expect("fixture"))
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: inline\n  cluster:\n    server: {https}\n    certificate-authority-data: {ca}\n- name: files\n  cluster:\n    server: {https}\n    certificate-authority: {ca_file}\nusers:\n- name: inline-cert\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n    token: prod-token\n- name: file-cert\n  user:\n    client-certificate: {cert_file}\n    client-key: {key_file}\n    token: staging-token\n- name: no-cert\n  user:\n    token: prod-token\ncontexts:\n- name: prod\n  context:\n    cluster: inline\n    user: inline-cert\n- name: staging\n  context:\n    cluster: files\n    user: file-cert\n- name: nocert\n  context:\n    cluster: inline\n    user: no-cert\n",
        ca = b64("ca.pem"),
        ca_file = tls_fixture("ca.pem").display(),
        cert = b64("client.pem"),
        key = b64("client.key"),
        cert_file = tls_fixture("client.pem").display(),
        key_file = tls_fixture("client.key").display(),
    );
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, kubeconfig).expect("write");
    let sources = format!(
        "data_sources:\n  kubernetes:\n    name: k8s\n    kubeconfig_path: \"{}\"\n    contexts: [prod, staging, nocert]\n",
        path.display()
    );
    let h = Harness::new(parse_config(&sources, SQUADS)).await;
    let health = h.source("k8s").health().await;
    assert!(
        !health.ok,
        "one context has no client certificate: {health:?}"
    );
    both_clusters_answered(&health);

    for context in ["prod", "staging"] {
        let out = call(
            &h,
            "U_OPS",
            "pods",
            json!({"namespace": "payments", "context": context}),
        )
        .await
        .unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(table_of(&out).rows.len(), 1, "{context}");
    }
    let before = lock(&seen).requests.len();
    let err = call(
        &h,
        "U_OPS",
        "pods",
        json!({"namespace": "payments", "context": "nocert"}),
    )
    .await
    .expect_err("the server requires a client certificate");
    assert!(
        matches!(err, CallError::Source(SourceError::Unavailable(_))),
        "{err}"
    );
    assert_eq!(lock(&seen).requests.len(), before, "nothing got through");
    assert!(lock(&seen).violations.is_empty());
}

/// `exec` credential plugins as EKS and GKE kubeconfigs use them: the command runs
/// with its args, env and KUBERNETES_EXEC_INFO; its token is cached until shortly
/// before it expires; a failing plugin is said in one line without its output.
#[tokio::test]
async fn kubernetes_exec_credential_plugins_give_cached_tokens() {
    use std::os::unix::fs::PermissionsExt;

    let (seen, url) = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("get-token.sh");
    std::fs::write(
        &plugin,
        "#!/bin/sh\necho \"$1\" >> \"$RUNS\"\nprintf '%s' \"$KUBERNETES_EXEC_INFO\" > \"$RUNS.info\"\nif [ \"$1\" = fail ]; then echo 'secret-ish diagnostics' >&2; echo '{\"status\":{\"token\":\"leaked\"}}'; exit 3; fi\nprintf '{\"kind\":\"ExecCredential\",\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"status\":{\"token\":\"%s\",\"expirationTimestamp\":\"%s\"}}' \"$TOKEN\" \"$UNTIL\"\n",
    )
    .expect("plugin");
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let runs = dir.path().join("runs");
    let user = |name: &str, arg: &str, token: &str, until: &str| {
        format!(
            "- name: {name}\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: ./get-token.sh\n      args: [{arg}]\n      env:\n      - name: RUNS\n        value: {}\n      - name: TOKEN\n        value: {token}\n      - name: UNTIL\n        value: \"{until}\"\n      interactiveMode: Never\n",
            runs.display()
        )
    };
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {url}\nusers:\n{}{}{}contexts:\n- name: prod\n  context:\n    cluster: c\n    user: cached\n- name: staging\n  context:\n    cluster: c\n    user: expired\n- name: broken\n  context:\n    cluster: c\n    user: failing\n",
        user("cached", "cached", "prod-token", "2099-01-01T00:00:00Z"),
        user("expired", "expired", "staging-token", "2020-01-01T00:00:00Z"),
        user("failing", "fail", "x", "2099-01-01T00:00:00Z"),
    );
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, kubeconfig).expect("write");
    let sources = format!(
        "data_sources:\n  kubernetes:\n    name: k8s\n    kubeconfig_path: \"{}\"\n    contexts: [prod, staging, broken]\n",
        path.display()
    );
    let h = Harness::new(parse_config(&sources, SQUADS)).await;
    let runs_of = |arg: &str| {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == arg)
            .count()
    };
    for context in ["prod", "prod", "staging", "staging"] {
        let out = call(
            &h,
            "U_OPS",
            "pods",
            json!({"namespace": "payments", "context": context}),
        )
        .await
        .unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_eq!(table_of(&out).rows.len(), 1);
    }
    assert_eq!(runs_of("cached"), 1, "a valid token is reused");
    assert_eq!(runs_of("expired"), 2, "an expired token is asked for again");
    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("runs.info")).expect("exec info"),
    )
    .expect("json");
    assert_eq!(info["kind"], "ExecCredential");
    assert_eq!(info["spec"]["interactive"], false);

    let err = call(
        &h,
        "U_OPS",
        "pods",
        json!({"namespace": "payments", "context": "broken"}),
    )
    .await
    .expect_err("the plugin fails");
    let text = err.to_string();
    assert!(
        text.contains("exec credential plugin `./get-token.sh` failed"),
        "{text}"
    );
    assert!(
        !text.contains("leaked") && !text.contains("diagnostics"),
        "{text}"
    );
    let requests = lock(&seen).requests.clone();
    assert_eq!(
        requests.len(),
        4,
        "the broken context sent nothing: {requests:?}"
    );
}
