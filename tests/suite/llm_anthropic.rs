//! The Anthropic Messages client against the scripted fake: request shape,
//! parsing, usage and cost, retries, error mapping, and the key staying secret.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use investigator::config::Secret;
use investigator::llm::anthropic::{AnthropicConfig, AnthropicModel};
use investigator::llm::{
    ContentBlock, Error, Message, Model, ModelRequest, ModelResponse, Role, StopReason, ToolChoice,
    ToolDef, Usage,
};
use serde_json::{json, Value};

use super::fake_anthropic::{FakeAnthropic, Scripted};

const SYSTEM: &str = "You investigate production incidents for the payments squad.";

fn config(fake: &FakeAnthropic) -> AnthropicConfig {
    let mut config = AnthropicConfig::new(Secret::new(FakeAnthropic::DEFAULT_KEY));
    config.base_url = fake.base_url();
    // Backoff waits stay in the milliseconds; retry-after tests set their own.
    config.max_backoff = Duration::from_millis(20);
    config.request_timeout = Duration::from_secs(10);
    config
}

fn client(config: AnthropicConfig) -> AnthropicModel {
    match AnthropicModel::new(config) {
        Ok(model) => model,
        Err(e) => panic!("client builds: {e}"),
    }
}

fn tools() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: "payments_db__run_query".into(),
            description: "Run one read-only SQL query.".into(),
            input_schema: json!({
                "type": "object",
                "properties": {"sql": {"type": "string"}},
                "required": ["sql"],
            }),
        },
        ToolDef {
            name: "payments_db__describe".into(),
            description: "List tables and columns.".into(),
            input_schema: json!({"type": "object", "properties": {}}),
        },
    ]
}

fn request() -> ModelRequest {
    ModelRequest {
        system: SYSTEM.into(),
        messages: vec![Message::user_text("Why did checkout fail at 14:05?")],
        tools: tools(),
        tool_choice: None,
        max_tokens: 1024,
    }
}

fn with_messages(messages: Vec<Message>) -> ModelRequest {
    ModelRequest {
        messages,
        ..request()
    }
}

fn ok(result: Result<ModelResponse, Error>) -> ModelResponse {
    match result {
        Ok(response) => response,
        Err(e) => panic!("expected a response, got {e:?}"),
    }
}

fn err(result: Result<ModelResponse, Error>) -> Error {
    match result {
        Ok(response) => panic!("expected an error, got {response:?}"),
        Err(e) => e,
    }
}

fn tool_use(id: &str, name: &str, input: Value) -> ContentBlock {
    ContentBlock::ToolUse {
        id: id.into(),
        name: name.into(),
        input,
    }
}

fn tool_result(id: &str, content: &str) -> ContentBlock {
    ContentBlock::ToolResult {
        tool_use_id: id.into(),
        content: content.into(),
        is_error: false,
    }
}

fn assistant(content: Vec<ContentBlock>) -> Message {
    Message {
        role: Role::Assistant,
        content,
    }
}

fn user(content: Vec<ContentBlock>) -> Message {
    Message {
        role: Role::User,
        content,
    }
}

fn raw_message(content: Value, usage: Value) -> Scripted {
    let body = json!({
        "id": "msg_raw",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": content,
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": usage,
    });
    Scripted::Raw {
        status: 200,
        headers: vec![("content-type", "application/json".into())],
        body: body.to_string(),
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test]
async fn sends_the_documented_request_shape() {
    let fake = FakeAnthropic::start(vec![Scripted::text("Looking.")]).await;
    let model = client(config(&fake));
    ok(model.complete(&request()).await);

    assert_eq!(fake.violations(), Vec::<String>::new());
    let sent = fake.requests();
    assert_eq!(sent.len(), 1);
    let body = &sent[0];
    assert_eq!(body["model"], "claude-sonnet-4-5");
    assert_eq!(body["max_tokens"], 1024);
    assert_eq!(
        body["system"],
        json!([{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}])
    );
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Why did checkout fail at 14:05?"}]}])
    );
    // Only the last tool carries the breakpoint: it caches the whole list.
    assert_eq!(
        body["tools"],
        json!([
            {
                "name": "payments_db__run_query",
                "description": "Run one read-only SQL query.",
                "input_schema": {
                    "type": "object",
                    "properties": {"sql": {"type": "string"}},
                    "required": ["sql"],
                },
            },
            {
                "name": "payments_db__describe",
                "description": "List tables and columns.",
                "input_schema": {"type": "object", "properties": {}},
                "cache_control": {"type": "ephemeral"},
            },
        ])
    );
    assert!(body.get("tool_choice").is_none(), "{body}");
    fake.shutdown().await;
}

#[tokio::test]
async fn tool_choice_and_optional_fields() {
    let fake = FakeAnthropic::start(vec![
        Scripted::text("a"),
        Scripted::text("b"),
        Scripted::text("c"),
        Scripted::text("d"),
    ])
    .await;
    let model = client(config(&fake));
    let choices = [
        ToolChoice::Auto,
        ToolChoice::Any,
        ToolChoice::Tool {
            name: "payments_db__describe".into(),
        },
    ];
    for choice in choices {
        let request = ModelRequest {
            tool_choice: Some(choice),
            ..request()
        };
        ok(model.complete(&request).await);
    }
    // No tools and no system prompt: both keys are left out, not sent empty.
    let bare = ModelRequest {
        system: String::new(),
        tools: Vec::new(),
        ..request()
    };
    ok(model.complete(&bare).await);

    assert_eq!(fake.violations(), Vec::<String>::new());
    let sent = fake.requests();
    assert_eq!(sent[0]["tool_choice"], json!({"type": "auto"}));
    assert_eq!(sent[1]["tool_choice"], json!({"type": "any"}));
    assert_eq!(
        sent[2]["tool_choice"],
        json!({"type": "tool", "name": "payments_db__describe"})
    );
    assert!(sent[3].get("system").is_none(), "{}", sent[3]);
    assert!(sent[3].get("tools").is_none(), "{}", sent[3]);
    assert_eq!(fake.remaining(), 0);
    fake.shutdown().await;
}

#[tokio::test]
async fn several_tool_calls_in_one_turn_and_their_results() {
    let mut first = Scripted::tool_use(&[
        (
            "toolu_01",
            "payments_db__run_query",
            json!({"sql": "SELECT count(*) FROM payments WHERE status = 'failed'"}),
        ),
        ("toolu_02", "payments_db__describe", json!({})),
        (
            "toolu_03",
            "payments_db__run_query",
            json!({"sql": "SELECT 1"}),
        ),
    ]);
    if let Scripted::Reply { content, .. } = &mut first {
        content.insert(0, json!({"type": "text", "text": "Checking three things."}));
    }
    let fake = FakeAnthropic::start(vec![first, Scripted::text("The gateway timed out.")]).await;
    let model = client(config(&fake));

    let response = ok(model.complete(&request()).await);
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    assert_eq!(
        response.content,
        vec![
            ContentBlock::Text {
                text: "Checking three things.".into()
            },
            tool_use(
                "toolu_01",
                "payments_db__run_query",
                json!({"sql": "SELECT count(*) FROM payments WHERE status = 'failed'"})
            ),
            tool_use("toolu_02", "payments_db__describe", json!({})),
            tool_use(
                "toolu_03",
                "payments_db__run_query",
                json!({"sql": "SELECT 1"})
            ),
        ]
    );

    let mut messages = request().messages;
    messages.push(assistant(response.content.clone()));
    messages.push(user(vec![
        tool_result("toolu_01", "count\n3"),
        tool_result("toolu_02", "payments(id, status, created_at)"),
        ContentBlock::ToolResult {
            tool_use_id: "toolu_03".into(),
            content: "statement timeout".into(),
            is_error: true,
        },
    ]));
    let second = ok(model.complete(&with_messages(messages)).await);
    assert_eq!(second.stop_reason, StopReason::EndTurn);
    assert_eq!(
        second.content,
        vec![ContentBlock::Text {
            text: "The gateway timed out.".into()
        }]
    );

    assert_eq!(fake.violations(), Vec::<String>::new());
    let sent = fake.requests();
    assert_eq!(sent.len(), 2);
    let results = &sent[1]["messages"][2]["content"];
    assert_eq!(results[0]["type"], "tool_result");
    assert_eq!(results[0]["tool_use_id"], "toolu_01");
    assert!(results[0].get("is_error").is_none(), "{results}");
    assert_eq!(results[2]["is_error"], true);
    fake.shutdown().await;
}

#[tokio::test]
async fn the_fake_refuses_conversations_the_api_would() {
    let asked = || {
        assistant(vec![
            tool_use("toolu_a", "payments_db__describe", json!({})),
            tool_use("toolu_b", "payments_db__describe", json!({})),
        ])
    };
    let question = || Message::user_text("why?");
    let cases: Vec<(&str, Vec<Message>, &str)> = vec![
        (
            "one result missing",
            vec![
                question(),
                asked(),
                user(vec![tool_result("toolu_a", "ok")]),
            ],
            "toolu_b from messages[1] has no tool_result",
        ),
        (
            "a result twice",
            vec![
                question(),
                asked(),
                user(vec![
                    tool_result("toolu_a", "ok"),
                    tool_result("toolu_b", "ok"),
                    tool_result("toolu_a", "again"),
                ]),
            ],
            "toolu_a has 2 tool_result blocks",
        ),
        (
            "a result for a call never made",
            vec![
                question(),
                asked(),
                user(vec![
                    tool_result("toolu_a", "ok"),
                    tool_result("toolu_b", "ok"),
                    tool_result("toolu_zzz", "?"),
                ]),
            ],
            "toolu_zzz matches no tool_use",
        ),
        (
            "a result with no call before it",
            vec![user(vec![tool_result("toolu_a", "ok")])],
            "has no tool_use in the previous assistant message",
        ),
        (
            "results too late",
            vec![
                question(),
                asked(),
                Message::user_text("hm"),
                assistant(vec![ContentBlock::Text { text: "ok".into() }]),
                user(vec![
                    tool_result("toolu_a", "ok"),
                    tool_result("toolu_b", "ok"),
                ]),
            ],
            "toolu_a from messages[1] has no tool_result",
        ),
        (
            "unanswered at the end",
            vec![question(), asked()],
            "have no tool_result (the conversation ends there)",
        ),
        (
            "text before the results",
            vec![
                question(),
                asked(),
                user(vec![
                    ContentBlock::Text {
                        text: "here".into(),
                    },
                    tool_result("toolu_a", "ok"),
                    tool_result("toolu_b", "ok"),
                ]),
            ],
            "tool_result blocks must come before any other content",
        ),
        (
            "two user messages",
            vec![question(), question()],
            "roles must alternate",
        ),
        (
            "starts with the assistant",
            vec![assistant(vec![ContentBlock::Text { text: "hi".into() }])],
            "the first message must use the user role",
        ),
        (
            "tool_use in a user message",
            vec![user(vec![tool_use(
                "toolu_u",
                "payments_db__describe",
                json!({}),
            )])],
            "tool_use is only allowed in assistant messages",
        ),
        (
            "empty text",
            vec![Message::user_text("")],
            "text content blocks must be non-empty",
        ),
    ];
    for (name, messages, expected) in cases {
        let fake = FakeAnthropic::start(vec![Scripted::text("unused")]).await;
        let model = client(config(&fake));
        let error = err(model.complete(&with_messages(messages)).await);
        match &error {
            Error::Rejected { status, message } => {
                assert_eq!(*status, 400, "{name}");
                assert!(message.contains(expected), "{name}: {message}");
            }
            other => panic!("{name}: expected Rejected, got {other:?}"),
        }
        let violations = fake.violations();
        assert!(
            violations.iter().any(|v| v.contains(expected)),
            "{name}: {violations:?}"
        );
        // A refused request does not use up the script.
        assert_eq!(fake.remaining(), 1, "{name}");
        fake.shutdown().await;
    }
}

#[tokio::test]
async fn the_fake_checks_the_key_and_version_headers() {
    let fake = FakeAnthropic::start_with_key("sk-ant-right", vec![Scripted::text("unused")]).await;
    let mut wrong_key = config(&fake);
    wrong_key.api_key = Secret::new("sk-ant-wrong");
    let error = err(client(wrong_key).complete(&request()).await);
    assert!(matches!(error, Error::Auth { status: 401 }), "{error:?}");

    let mut old_version = config(&fake);
    old_version.api_key = Secret::new("sk-ant-right");
    old_version.anthropic_version = "2020-01-01".into();
    let error = err(client(old_version).complete(&request()).await);
    assert!(
        matches!(error, Error::Rejected { status: 400, .. }),
        "{error:?}"
    );

    let violations = fake.violations();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(
        violations[0].contains("x-api-key is not the expected key"),
        "{violations:?}"
    );
    assert!(
        violations[1].contains("anthropic-version"),
        "{violations:?}"
    );
    // Neither attempt was retried.
    assert_eq!(fake.requests().len(), 2);
    fake.shutdown().await;
}

#[tokio::test]
async fn usage_and_cost() {
    let fake = FakeAnthropic::start(vec![
        raw_message(
            json!([{"type": "text", "text": "done"}]),
            json!({
                "input_tokens": 1000,
                "output_tokens": 500,
                "cache_creation_input_tokens": 2000,
                "cache_read_input_tokens": 10000,
                "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 0},
                "service_tier": "standard",
            }),
        ),
        // Some gateways send null for the cache counts.
        raw_message(
            json!([{"type": "text", "text": "done"}]),
            json!({"input_tokens": 7, "output_tokens": 3, "cache_creation_input_tokens": null}),
        ),
        Scripted::tool_use(&[("toolu_1", "payments_db__describe", json!({}))]),
    ])
    .await;
    let model = client(config(&fake));
    assert_eq!(model.name(), "claude-sonnet-4-5");

    let cached = ok(model.complete(&request()).await);
    let expected = Usage {
        input_tokens: 1000,
        output_tokens: 500,
        cache_creation_input_tokens: 2000,
        cache_read_input_tokens: 10000,
    };
    assert_eq!(cached.usage, expected);
    // Sonnet: 1000*3 + 500*15 + 2000*3.75 + 10000*0.30 = 21000 micro-dollars.
    let cost = model.pricing().cost(&cached.usage);
    assert!((cost - 0.021).abs() < 1e-12, "{cost}");

    let nulls = ok(model.complete(&request()).await);
    assert_eq!(
        nulls.usage,
        Usage {
            input_tokens: 7,
            output_tokens: 3,
            ..Usage::default()
        }
    );

    let scripted = ok(model.complete(&request()).await);
    assert_eq!(
        scripted.usage,
        Usage {
            input_tokens: 100,
            output_tokens: 50,
            ..Usage::default()
        }
    );
    let mut total = Usage::default();
    for response in [&cached, &nulls, &scripted] {
        total.add(&response.usage);
    }
    assert_eq!(total.input_tokens, 1107);

    // The price follows the configured model.
    let mut haiku = config(&fake);
    haiku.model = "claude-haiku-4-5".into();
    let haiku = client(haiku);
    assert_eq!(haiku.name(), "claude-haiku-4-5");
    let cost = haiku.pricing().cost(&expected);
    // 1000*1 + 500*5 + 2000*1.25 + 10000*0.10 = 7000 micro-dollars.
    assert!((cost - 0.007).abs() < 1e-12, "{cost}");
    let mut opus = config(&fake);
    opus.model = "claude-opus-4-1-20250805".into();
    assert_eq!(client(opus).pricing().output, 75.0);
    fake.shutdown().await;
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_servers_wait() {
    let fake = FakeAnthropic::start(vec![
        Scripted::Error {
            status: 429,
            error_type: "rate_limit_error",
            retry_after: Some(0.05),
        },
        Scripted::Error {
            status: 429,
            error_type: "rate_limit_error",
            retry_after: Some(0.25),
        },
        Scripted::text("ok"),
    ])
    .await;
    let mut config = config(&fake);
    config.max_backoff = Duration::from_secs(1);
    let model = client(config);
    let started = Instant::now();
    let response = ok(model.complete(&request()).await);
    assert_eq!(
        response.content,
        vec![ContentBlock::Text { text: "ok".into() }]
    );
    // Both waits were the server's (backoff alone may wait less).
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.requests().len(), 3);
    // The retried bodies are identical.
    let sent = fake.requests();
    assert_eq!(sent[0], sent[2]);
    assert_eq!(fake.violations(), Vec::<String>::new());
    fake.shutdown().await;
}

#[tokio::test]
async fn a_retry_after_beyond_max_backoff_gives_up_at_once() {
    let fake = FakeAnthropic::start(vec![
        Scripted::Error {
            status: 429,
            error_type: "rate_limit_error",
            retry_after: Some(60.0),
        },
        Scripted::text("never reached"),
    ])
    .await;
    let mut config = config(&fake);
    config.max_backoff = Duration::from_secs(30);
    let started = Instant::now();
    let error = err(client(config).complete(&request()).await);
    assert!(started.elapsed() < Duration::from_secs(5));
    match &error {
        Error::Unavailable { attempts, message } => {
            assert_eq!(*attempts, 1);
            assert!(message.contains("asked to wait 60s"), "{message}");
            assert!(message.contains("rate_limit_error"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(fake.requests().len(), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn overloaded_is_retried_until_it_passes() {
    let fake = FakeAnthropic::start(vec![
        Scripted::error(529, "overloaded_error"),
        Scripted::error(529, "overloaded_error"),
        Scripted::error(503, "api_error"),
        Scripted::text("ok"),
    ])
    .await;
    let response = ok(client(config(&fake)).complete(&request()).await);
    assert_eq!(response.stop_reason, StopReason::EndTurn);
    assert_eq!(fake.requests().len(), 4);
    assert_eq!(fake.violations(), Vec::<String>::new());
    fake.shutdown().await;
}

#[tokio::test]
async fn server_errors_exhaust_the_retries() {
    let fake = FakeAnthropic::start(vec![
        Scripted::error(500, "api_error"),
        Scripted::error(502, "api_error"),
        Scripted::error(504, "timeout_error"),
        Scripted::text("not reached"),
    ])
    .await;
    let mut config = config(&fake);
    config.max_retries = 2;
    let error = err(client(config).complete(&request()).await);
    match &error {
        Error::Unavailable { attempts, message } => {
            assert_eq!(*attempts, 3);
            assert!(message.contains("HTTP 504"), "{message}");
            assert!(message.contains("timeout_error"), "{message}");
            assert!(message.contains("request-id req_fake_2"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(error
        .to_string()
        .starts_with("model unavailable after 3 attempt(s)"));
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(fake.remaining(), 1);

    let mut no_retries = self::config(&fake);
    no_retries.max_retries = 0;
    let fake_once = FakeAnthropic::start(vec![Scripted::error(529, "overloaded_error")]).await;
    no_retries.base_url = fake_once.base_url();
    let error = err(client(no_retries).complete(&request()).await);
    assert!(
        matches!(error, Error::Unavailable { attempts: 1, .. }),
        "{error:?}"
    );
    fake.shutdown().await;
    fake_once.shutdown().await;
}

#[tokio::test]
async fn an_exhausted_script_fails_loudly() {
    let fake = FakeAnthropic::start(Vec::new()).await;
    let mut config = config(&fake);
    config.max_retries = 1;
    let error = err(client(config).complete(&request()).await);
    assert!(
        matches!(&error, Error::Unavailable { attempts: 2, message } if message.contains("script exhausted")),
        "{error:?}"
    );
    assert_eq!(fake.violations().len(), 2);
    fake.shutdown().await;
}

#[tokio::test]
async fn client_errors_are_rejected_without_retry() {
    for (status, error_type) in [
        (400, "invalid_request_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
    ] {
        let fake = FakeAnthropic::start(vec![
            Scripted::error(status, error_type),
            Scripted::text("not reached"),
        ])
        .await;
        let error = err(client(config(&fake)).complete(&request()).await);
        match &error {
            Error::Rejected {
                status: got,
                message,
            } => {
                assert_eq!(*got, status);
                assert!(message.starts_with(error_type), "{message}");
                assert!(message.contains("(request-id req_fake_0)"), "{message}");
            }
            other => panic!("{status}: expected Rejected, got {other:?}"),
        }
        assert_eq!(fake.requests().len(), 1, "{status}");
        fake.shutdown().await;
    }
}

#[tokio::test]
async fn auth_errors_are_not_retried() {
    for (status, error_type) in [(401, "authentication_error"), (403, "permission_error")] {
        let fake = FakeAnthropic::start(vec![
            Scripted::error(status, error_type),
            Scripted::text("not reached"),
        ])
        .await;
        let error = err(client(config(&fake)).complete(&request()).await);
        assert!(
            matches!(error, Error::Auth { status: got } if got == status),
            "{error:?}"
        );
        assert_eq!(fake.requests().len(), 1, "{status}");
        fake.shutdown().await;
    }
}

#[tokio::test]
async fn unknown_content_blocks_are_ignored() {
    let fake = FakeAnthropic::start(vec![Scripted::Reply {
        content: vec![
            json!({"type": "thinking", "thinking": "Let me look.", "signature": "c2ln"}),
            json!({"type": "redacted_thinking", "data": "opaque"}),
            json!({"type": "text", "text": "Two checks.", "citations": null}),
            json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}}),
            json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}),
            json!({"type": "tool_use", "id": "toolu_9", "name": "payments_db__describe", "input": {}}),
            json!({"type": "something_new", "payload": [1, 2, 3]}),
        ],
        stop_reason: "tool_use",
        usage: (10, 5),
    }])
    .await;
    let response = ok(client(config(&fake)).complete(&request()).await);
    assert_eq!(
        response.content,
        vec![
            ContentBlock::Text {
                text: "Two checks.".into()
            },
            tool_use("toolu_9", "payments_db__describe", json!({})),
        ]
    );
    assert_eq!(response.stop_reason, StopReason::ToolUse);
    fake.shutdown().await;
}

#[tokio::test]
async fn odd_responses_are_protocol_errors_or_tolerated() {
    let fake = FakeAnthropic::start(vec![
        Scripted::Raw {
            status: 200,
            headers: Vec::new(),
            body: "<html>gateway</html>".into(),
        },
        // A known block type with the wrong shape is an error, not silently dropped.
        raw_message(json!([{"type": "tool_use", "id": "toolu_x"}]), json!({})),
        // A stop reason from a newer API version.
        Scripted::Reply {
            content: vec![json!({"type": "text", "text": "hm"})],
            stop_reason: "model_context_window_exceeded",
            usage: (1, 1),
        },
        // A proxy's HTML error page, then success.
        Scripted::Raw {
            status: 502,
            headers: Vec::new(),
            body: "<html><body>Bad Gateway</body></html>".into(),
        },
        Scripted::text("ok"),
    ])
    .await;
    let model = client(config(&fake));
    let error = err(model.complete(&request()).await);
    assert!(
        matches!(&error, Error::Protocol(m) if m.contains("cannot decode the response")),
        "{error:?}"
    );
    let error = err(model.complete(&request()).await);
    assert!(
        matches!(&error, Error::Protocol(m) if m.contains("content block 0 is malformed")),
        "{error:?}"
    );
    let newer = ok(model.complete(&request()).await);
    assert_eq!(newer.stop_reason, StopReason::Unknown);
    ok(model.complete(&request()).await);
    assert_eq!(fake.requests().len(), 5);
    fake.shutdown().await;
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retried() {
    let fake = FakeAnthropic::start(vec![
        Scripted::Delay {
            seconds: 2.0,
            then: Box::new(Scripted::text("too late")),
        },
        Scripted::text("ok"),
    ])
    .await;
    let mut config = config(&fake);
    config.request_timeout = Duration::from_millis(200);
    let response = ok(client(config.clone()).complete(&request()).await);
    assert_eq!(
        response.content,
        vec![ContentBlock::Text { text: "ok".into() }]
    );
    assert_eq!(fake.requests().len(), 2);

    config.base_url = closed_port_url();
    config.max_retries = 2;
    let error = err(client(config).complete(&request()).await);
    match &error {
        Error::Unavailable { attempts, message } => {
            assert_eq!(*attempts, 3);
            assert!(message.contains("127.0.0.1"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn the_key_never_shows() {
    const KEY: &str = "sk-ant-api03-CANARY-do-not-print-0123456789";
    let echo = |status: u16| {
        Scripted::Raw {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: json!({"type": "error", "error": {"type": "invalid_request_error", "message": format!("bad key {KEY}")}})
            .to_string(),
    }
    };
    let fake = FakeAnthropic::start_with_key(
        KEY,
        vec![
            echo(400),
            echo(401),
            echo(500),
            echo(500),
            Scripted::Raw {
                status: 200,
                headers: Vec::new(),
                body: format!("not json {KEY}"),
            },
            Scripted::Raw {
                status: 302,
                headers: vec![("location", format!("https://elsewhere.example/?k={KEY}"))],
                body: format!("moved {KEY}"),
            },
        ],
    )
    .await;
    let mut config = config(&fake);
    config.api_key = Secret::new(KEY);
    config.max_retries = 1;
    let model = client(config.clone());

    let mut errors = Vec::new();
    for _ in 0..5 {
        errors.push(err(model.complete(&request()).await));
    }
    assert!(
        matches!(errors[0], Error::Rejected { status: 400, .. }),
        "{:?}",
        errors[0]
    );
    assert!(
        matches!(errors[1], Error::Auth { status: 401 }),
        "{:?}",
        errors[1]
    );
    assert!(
        matches!(errors[2], Error::Unavailable { attempts: 2, .. }),
        "{:?}",
        errors[2]
    );
    assert!(matches!(errors[3], Error::Protocol(_)), "{:?}", errors[3]);
    // Redirects are not followed: they would take the key with them.
    assert!(
        matches!(&errors[4], Error::Protocol(m) if m.contains("302")),
        "{:?}",
        errors[4]
    );
    assert_eq!(fake.requests().len(), 6);

    config.base_url = closed_port_url();
    errors.push(err(client(config.clone()).complete(&request()).await));
    config.api_key = Secret::new(format!("{KEY}\n"));
    let refused = AnthropicModel::new(config.clone()).err();
    assert!(refused.is_some());

    for error in &errors {
        for shown in [
            format!("{error:?}"),
            format!("{error:#?}"),
            error.to_string(),
        ] {
            assert!(!shown.contains(KEY), "key leaked: {shown}");
            assert!(!shown.contains("CANARY"), "key leaked: {shown}");
        }
    }
    let shown = refused.map(|e| format!("{e} {e:?}")).unwrap_or_default();
    assert!(!shown.contains("CANARY"), "{shown}");
    let shown = format!("{config:?} {model:?}");
    assert!(!shown.contains("CANARY"), "{shown}");
    // The fake never had reason to complain, the key was right every time.
    assert_eq!(fake.violations(), Vec::<String>::new());
    fake.shutdown().await;
}

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn logs_show_each_attempt_but_never_the_key() {
    const KEY: &str = "sk-ant-api03-LOGCANARY-0123456789";
    let echo = |status: u16, error_type: &str| Scripted::Raw {
        status,
        headers: vec![("retry-after", "0.01".into())],
        body:
            json!({"type": "error", "error": {"type": error_type, "message": format!("key {KEY}")}})
                .to_string(),
    };
    let fake = FakeAnthropic::start_with_key(
        KEY,
        vec![
            echo(529, "overloaded_error"),
            echo(401, "authentication_error"),
        ],
    )
    .await;
    let captured = Captured::default();
    // The test runtime is single-threaded, so a thread-local subscriber sees every task.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    // While only one dispatcher exists, tracing decides a callsite's interest
    // from the subscriber of whichever thread hits it first, so another test's
    // thread would switch these callsites off for good. A second live
    // dispatcher makes it ask every registered one.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut config = config(&fake);
    config.api_key = Secret::new(KEY);
    let error = err(client(config).complete(&request()).await);
    assert!(matches!(error, Error::Auth { status: 401 }), "{error:?}");

    let logs = captured.text();
    assert!(!logs.contains("LOGCANARY"), "key logged:\n{logs}");
    let attempts: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("anthropic messages request"))
        .collect();
    assert_eq!(attempts.len(), 2, "{logs}");
    for (line, fields) in attempts.iter().zip([
        ["attempt=1", "status=\"529\"", "wait_ms=10"],
        ["attempt=2", "status=\"401\"", "wait_ms=0"],
    ]) {
        for field in fields {
            assert!(line.contains(field), "{field} missing from {line}");
        }
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn long_error_bodies_are_cut_after_the_key_is_redacted() {
    const KEY: &str = "sk-ant-api03-CUTCANARY-0123456789";
    // The key straddles the 500-character cut of error messages.
    let message = format!("{}{KEY} and more", "x".repeat(480));
    let fake = FakeAnthropic::start_with_key(
        KEY,
        vec![Scripted::Raw {
            status: 400,
            headers: vec![("request-id", "r".repeat(300))],
            body: json!({"type": "error", "error": {"type": "invalid_request_error", "message": message}})
                .to_string(),
        }],
    )
    .await;
    let mut config = config(&fake);
    config.api_key = Secret::new(KEY);
    let error = err(client(config).complete(&request()).await);
    match &error {
        Error::Rejected { message, .. } => {
            assert!(!message.contains("CUTCANARY"), "{message}");
            assert!(!message.contains("sk-ant-api03"), "{message}");
            assert!(message.chars().count() < 700, "{message}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    fake.shutdown().await;
}
