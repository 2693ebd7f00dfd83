//! `LlmAgent` against the fake OpenAI chat server: streaming, the tool-call
//! round trip, fillers and actions, context trimming, auth, faults and retries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use switchboard_fakes::openai_chat::{ChatScript, FakeChat};
use switchboard_providers::llm::{LlmAgent, LlmConfig};
use switchboard_providers::{
    AgentAction, AgentOutput, AgentTurn, ConversationAgent, HistoryEntry, ProviderError, ProviderErrorKind,
    SecretString, Speaker, ToolHost, ToolResult, ToolSpec, TurnContext, TurnInput,
};

const KEY: &str = "sk-test-key-123";

fn config(fake: &FakeChat) -> LlmConfig {
    let mut c = LlmConfig::openai_compatible(&fake.base_url(), Some(SecretString::from(KEY.to_owned())), "test-model");
    c.system_prompt = "You are a test agent.".into();
    // Generous: every retry the agent may make (waits included) fits in the
    // first-output budget even on a stalled machine, so none is dropped.
    c.first_token_timeout = Duration::from_secs(15);
    c.stall_timeout = Duration::from_secs(10);
    c.request_timeout = Duration::from_secs(30);
    c
}

fn agent(c: LlmConfig) -> LlmAgent {
    LlmAgent::new(c).expect("valid config")
}

fn turn(text: &str, tools: Option<Arc<dyn ToolHost>>) -> AgentTurn {
    AgentTurn {
        input: TurnInput::UserText(text.into()),
        history: Vec::new(),
        context: TurnContext {
            tools,
            facts: Vec::new(),
        },
    }
}

async fn run(agent: &LlmAgent, turn: AgentTurn) -> Vec<Result<AgentOutput, ProviderError>> {
    agent.respond(turn).collect().await
}

fn text(s: &str) -> Result<AgentOutput, ProviderError> {
    Ok(AgentOutput::Text(s.into()))
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

fn call(id: &str, name: &str, args: &str) -> (String, String, String) {
    (id.into(), name.into(), args.into())
}

/// The single error a failed turn ends with.
fn last_error(out: &[Result<AgentOutput, ProviderError>]) -> ProviderError {
    out.last()
        .expect("some output")
        .clone()
        .expect_err("ends with an error")
}

/// A tool host that records calls. `book_table` succeeds, `fail` reports an
/// error, `slow` answers once `release` is notified, `hang_up` asks for a hangup.
#[derive(Default)]
struct TestHost {
    calls: Mutex<Vec<(String, String)>>,
    release: Arc<tokio::sync::Notify>,
}

impl TestHost {
    fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }
}

impl ToolHost for TestHost {
    fn specs(&self) -> Vec<ToolSpec> {
        ["book_table", "fail", "slow", "hang_up"]
            .iter()
            .map(|name| ToolSpec {
                name: (*name).into(),
                description: format!("The {name} tool"),
                parameters: json!({"type": "object", "properties": {"time": {"type": "string"}}}),
            })
            .collect()
    }

    fn call(&self, name: String, arguments: String) -> BoxFuture<'static, ToolResult> {
        self.calls.lock().unwrap().push((name.clone(), arguments));
        let release = Arc::clone(&self.release);
        Box::pin(async move {
            match name.as_str() {
                "book_table" => ToolResult::ok(json!({"booked": true})),
                "fail" => ToolResult::error("calendar_down", "the calendar is unreachable"),
                "slow" => {
                    release.notified().await;
                    ToolResult::ok(json!({"slow": "done"}))
                }
                "hang_up" => ToolResult {
                    content: json!({"ok": true}),
                    action: Some(AgentAction::Hangup),
                },
                other => panic!("the agent called {other}, which it was not offered"),
            }
        })
    }
}

fn messages(request: &Value) -> Vec<Value> {
    request["messages"].as_array().expect("messages array").clone()
}

#[tokio::test]
async fn text_streams_as_separate_deltas_in_order() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::Text(s(&["Hello", " there.", " How can I help?"])));
    let out = run(&agent(config(&fake)), turn("Hi", None)).await;
    assert_eq!(out, vec![text("Hello"), text(" there."), text(" How can I help?")]);

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["model"], "test-model");
    assert_eq!(requests[0]["stream"], true);
    assert!(requests[0].get("tools").is_none(), "no tools offered without a host");
    assert_eq!(
        messages(&requests[0]),
        vec![
            json!({"role": "system", "content": "You are a test agent."}),
            json!({"role": "user", "content": "Hi"}),
        ]
    );
}

#[tokio::test]
async fn tool_call_round_trip() {
    let fake = FakeChat::start().await;
    let args = r#"{"time":"19:00","party":2}"#;
    fake.push(ChatScript::ToolCalls {
        text: vec![],
        calls: vec![call("call_1", "book_table", args)],
    });
    fake.push(ChatScript::Text(s(&["Booked", " for seven."])));
    let host = Arc::new(TestHost::default());
    let mut c = config(&fake);
    // An instant tool finishes on its first poll: no filler even at zero.
    c.tool_filler_after = Duration::ZERO;
    let out = run(&agent(c), turn("Table for two at seven", Some(host.clone()))).await;

    assert_eq!(
        out,
        vec![
            Ok(AgentOutput::ToolCall {
                name: "book_table".into(),
                arguments: args.into(),
                result: r#"{"booked":true}"#.into(),
            }),
            text("Booked"),
            text(" for seven."),
        ]
    );
    assert_eq!(host.calls(), vec![("book_table".to_owned(), args.to_owned())]);

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["tool_choice"], "auto");
    let tools = requests[0]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 4);
    assert_eq!(
        tools[0],
        json!({"type": "function", "function": {
            "name": "book_table", "description": "The book_table tool",
            "parameters": {"type": "object", "properties": {"time": {"type": "string"}}},
        }})
    );
    let second = messages(&requests[1]);
    assert_eq!(second.len(), 4, "system, user, assistant tool_calls, tool");
    assert_eq!(
        second[2],
        json!({"role": "assistant", "tool_calls": [{
            "id": "call_1", "type": "function", "function": {"name": "book_table", "arguments": args},
        }]})
    );
    assert_eq!(
        second[3],
        json!({"role": "tool", "tool_call_id": "call_1", "content": r#"{"booked":true}"#})
    );
}

#[tokio::test]
async fn tool_error_goes_back_to_the_model() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::ToolCalls {
        text: vec![],
        calls: vec![call("call_9", "fail", "{}")],
    });
    fake.push(ChatScript::Text(s(&["Sorry, the calendar is down."])));
    let host = Arc::new(TestHost::default());
    let out = run(&agent(config(&fake)), turn("Book it", Some(host.clone()))).await;

    let expected = json!({"error": {"code": "calendar_down", "message": "the calendar is unreachable"}});
    assert_eq!(out.len(), 2);
    let Ok(AgentOutput::ToolCall { name, result, .. }) = &out[0] else {
        panic!("expected a tool call first: {out:?}");
    };
    assert_eq!(name, "fail");
    assert_eq!(serde_json::from_str::<Value>(result).unwrap(), expected);
    assert_eq!(out[1], text("Sorry, the calendar is down."));

    let tool_message = messages(&fake.requests()[1])[3].clone();
    assert_eq!(tool_message["role"], "tool");
    assert_eq!(tool_message["tool_call_id"], "call_9");
    let content: Value = serde_json::from_str(tool_message["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, expected);
}

#[tokio::test]
async fn unknown_tool_is_an_error_result_and_never_reaches_the_host() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::ToolCalls {
        text: vec![],
        calls: vec![call("call_x", "launch_rocket", r#"{"to":"moon"}"#)],
    });
    fake.push(ChatScript::Text(s(&["I cannot do that."])));
    let host = Arc::new(TestHost::default());
    let out = run(&agent(config(&fake)), turn("Launch", Some(host.clone()))).await;

    assert!(host.calls().is_empty());
    assert_eq!(out.last(), Some(&text("I cannot do that.")));
    let tool_message = messages(&fake.requests()[1])[3].clone();
    let content: Value = serde_json::from_str(tool_message["content"].as_str().unwrap()).unwrap();
    assert_eq!(content["error"]["code"], "unknown_tool");
}

#[tokio::test]
async fn a_slow_tool_gets_the_filler_line_before_its_result() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::ToolCalls {
        text: s(&["Let me check."]),
        calls: vec![call("call_s", "slow", "{}")],
    });
    fake.push(ChatScript::Text(s(&["All done."])));
    let host = Arc::new(TestHost::default());
    let mut c = config(&fake);
    c.tool_filler = "One moment please.".into();
    c.tool_filler_after = Duration::from_millis(50);
    let agent = agent(c);
    let mut stream = agent.respond(turn("Check", Some(host.clone())));
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        if item == text(" One moment please.") {
            // The tool is slow by any clock: it answers only after the
            // filler (without one, it runs into the tool timeout).
            host.release.notify_one();
        }
        out.push(item);
    }

    assert_eq!(
        out,
        vec![
            text("Let me check."),
            text(" One moment please."),
            Ok(AgentOutput::ToolCall {
                name: "slow".into(),
                arguments: "{}".into(),
                result: r#"{"slow":"done"}"#.into(),
            }),
            text(" All done."),
        ]
    );
}

#[tokio::test]
async fn a_tool_action_comes_after_all_text() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::ToolCalls {
        text: s(&["Okay,"]),
        calls: vec![call("call_h", "hang_up", "{}")],
    });
    fake.push(ChatScript::Text(s(&["Goodbye", " now."])));
    let host = Arc::new(TestHost::default());
    let out = run(&agent(config(&fake)), turn("Bye", Some(host))).await;

    assert_eq!(out.len(), 5, "{out:?}");
    assert_eq!(out[0], text("Okay,"));
    assert!(matches!(out[1], Ok(AgentOutput::ToolCall { .. })));
    assert_eq!(&out[2..4], &[text(" Goodbye"), text(" now.")]);
    assert_eq!(out[4], Ok(AgentOutput::Action(AgentAction::Hangup)));
}

#[tokio::test]
async fn tool_rounds_are_bounded() {
    let fake = FakeChat::start().await;
    let again = || ChatScript::ToolCalls {
        text: vec![],
        calls: vec![call("c", "book_table", "{}")],
    };
    fake.push(again());
    fake.push(again());
    let host = Arc::new(TestHost::default());
    let mut c = config(&fake);
    c.max_tool_rounds = 1;
    let out = run(&agent(c), turn("Loop", Some(host.clone()))).await;

    // The second request forbids tools; its tool call is not run.
    assert_eq!(host.calls().len(), 1);
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Ok(AgentOutput::ToolCall { .. })))
            .count(),
        1
    );
    assert!(out.iter().all(Result::is_ok));
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1]["tool_choice"], "none");
}

#[tokio::test]
async fn history_is_trimmed_to_the_token_budget_oldest_first() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::Text(s(&["Sure."])));
    // Each line: 400 chars = 100 + 4 tokens. System (21 chars) 10, input 5.
    let line = |n: usize| format!("{n}{}", "x".repeat(399));
    let history = (0..8)
        .map(|n| HistoryEntry {
            speaker: if n % 2 == 0 { Speaker::Caller } else { Speaker::Agent },
            text: line(n),
        })
        .collect();
    let mut c = config(&fake);
    c.max_context_tokens = 350; // 15 mandatory + 3 lines (312) = 327; a fourth would be 431.
    let t = AgentTurn {
        history,
        ..turn("Okay", None)
    };
    let out = run(&agent(c), t).await;
    assert_eq!(out, vec![text("Sure.")]);

    let sent = messages(&fake.requests()[0]);
    assert_eq!(
        sent,
        vec![
            json!({"role": "system", "content": "You are a test agent."}),
            json!({"role": "assistant", "content": line(5)}),
            json!({"role": "user", "content": line(6)}),
            json!({"role": "assistant", "content": line(7)}),
            json!({"role": "user", "content": "Okay"}),
        ]
    );
}

#[tokio::test]
async fn the_api_key_is_sent_as_bearer_and_no_key_sends_no_header() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::Text(s(&["a"])));
    fake.push(ChatScript::Text(s(&["b"])));
    run(&agent(config(&fake)), turn("Hi", None)).await;
    let mut keyless = config(&fake);
    keyless.api_key = None;
    run(&agent(keyless), turn("Hi", None)).await;
    assert_eq!(fake.authorization(), vec![Some(format!("Bearer {KEY}")), None]);
}

#[tokio::test]
async fn server_errors_become_status_errors_after_two_retries() {
    let fake = FakeChat::start().await;
    for _ in 0..8 {
        fake.push(ChatScript::Status(500));
    }
    let out = run(&agent(config(&fake)), turn("Hi", None)).await;
    assert_eq!(out.len(), 1);
    let e = last_error(&out);
    assert_eq!(
        (e.provider, e.kind),
        ("openai_compatible", ProviderErrorKind::Status(500))
    );
    assert_eq!(fake.requests().len(), 3, "one request and two retries, no more");
}

#[tokio::test]
async fn too_many_requests_is_rate_limited_after_two_retries() {
    let fake = FakeChat::start().await;
    for _ in 0..8 {
        fake.push(ChatScript::Status(429));
    }
    let out = run(&agent(config(&fake)), turn("Hi", None)).await;
    assert_eq!(out.len(), 1);
    assert_eq!(last_error(&out).kind, ProviderErrorKind::RateLimited);
    assert_eq!(fake.requests().len(), 3, "one request and two retries, no more");
}

/// Runs a turn, failing the test if it takes longer than `within`.
async fn run_within(
    within: Duration,
    agent: &LlmAgent,
    turn: AgentTurn,
) -> (Vec<Result<AgentOutput, ProviderError>>, Duration) {
    let started = tokio::time::Instant::now();
    let out = tokio::time::timeout(within, run(agent, turn))
        .await
        .unwrap_or_else(|_| panic!("the turn did not end within {within:?}"));
    (out, started.elapsed())
}

#[tokio::test]
async fn a_long_retry_after_fails_at_once_without_a_retry() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::StatusRetryAfter(429, 30));
    fake.push(ChatScript::text(["never"]));
    let mut c = config(&fake);
    // Long enough that waiting out the 30 s, or timing out before a retry,
    // would blow the 15 s bound below.
    c.first_token_timeout = Duration::from_secs(20);
    let (out, _) = run_within(Duration::from_secs(15), &agent(c), turn("Hi", None)).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(last_error(&out).kind, ProviderErrorKind::RateLimited);
    assert_eq!(fake.requests().len(), 1, "a 30 s Retry-After is never waited out");

    // The same for a 503 that asks for a long pause.
    let fake = FakeChat::start().await;
    fake.push(ChatScript::StatusRetryAfter(503, 30));
    fake.push(ChatScript::text(["never"]));
    let mut c = config(&fake);
    c.first_token_timeout = Duration::from_secs(20);
    let (out, _) = run_within(Duration::from_secs(15), &agent(c), turn("Hi", None)).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(last_error(&out).kind, ProviderErrorKind::Status(503));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_short_retry_after_is_waited_out_and_retried() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::StatusRetryAfter(429, 1));
    fake.push(ChatScript::text(["After ", "the pause."]));
    let (out, took) = run_within(Duration::from_secs(15), &agent(config(&fake)), turn("Hi", None)).await;
    assert_eq!(out, vec![text("After "), text("the pause.")]);
    assert_eq!(fake.requests().len(), 2);
    assert!(
        took >= Duration::from_secs(1),
        "the retry waited for the server's Retry-After, not the 200 ms backoff: {took:?}"
    );
}

#[tokio::test]
async fn a_retry_after_past_the_first_token_deadline_is_not_waited_for() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::StatusRetryAfter(429, 2));
    fake.push(ChatScript::text(["never"]));
    let mut c = config(&fake);
    // 2 s is short enough to honour (the policy's `max_delay`), but not
    // within this budget, which is as long as it can be for the 429 to
    // arrive in time.
    c.first_token_timeout = Duration::from_millis(1_900);
    let agent = agent(c);
    let turn = run_within(Duration::from_secs(10), &agent, turn("Hi", None));
    tokio::pin!(turn);
    // When the fake was seen to have the request: the 429 was sent after it.
    let mut asked_at = None;
    let (out, _) = loop {
        tokio::select! {
            done = &mut turn => break done,
            () = tokio::time::sleep(Duration::from_millis(10)), if asked_at.is_none() => {
                if !fake.requests().is_empty() {
                    asked_at = Some(tokio::time::Instant::now());
                }
            }
        }
    };
    let after_ask = asked_at.map_or(Duration::ZERO, |at| at.elapsed());
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(last_error(&out).kind, ProviderErrorKind::RateLimited);
    assert_eq!(fake.requests().len(), 1);
    // Sleeping the 2 s after the 429 would take well over this; the turn's
    // own start-up (connecting, sending) is not counted.
    assert!(
        after_ask < Duration::from_millis(1_500),
        "the 2 s were not slept: the turn ended {after_ask:?} after the request"
    );
}

#[tokio::test]
async fn an_exhausted_quota_is_not_retried() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::InsufficientQuota);
    fake.push(ChatScript::text(["never"]));
    let out = run(&agent(config(&fake)), turn("Hi", None)).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(last_error(&out).kind, ProviderErrorKind::RateLimited);
    assert_eq!(fake.requests().len(), 1, "no wait heals an empty account");
}

#[tokio::test]
async fn a_client_error_is_its_status_and_not_retried() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::Status(400));
    fake.push(ChatScript::Text(s(&["never"])));
    let out = run(&agent(config(&fake)), turn("Hi", None)).await;
    assert_eq!(out.len(), 1);
    assert_eq!(last_error(&out).kind, ProviderErrorKind::Status(400));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_malformed_chunk_is_malformed_and_not_retried() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::Malformed);
    fake.push(ChatScript::Text(s(&["never"])));
    let out = run(&agent(config(&fake)), turn("Hi", None)).await;
    assert_eq!(out.len(), 1);
    assert!(
        matches!(last_error(&out).kind, ProviderErrorKind::Malformed(_)),
        "{out:?}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_stall_after_text_is_a_timeout_without_retry() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::StallAfter(s(&["Hello"])));
    fake.push(ChatScript::Text(s(&["never"])));
    let mut c = config(&fake);
    // The fake stays silent forever after "Hello".
    c.stall_timeout = Duration::from_secs(1);
    let out = run(&agent(c), turn("Hi", None)).await;
    assert_eq!(out.len(), 2);
    assert_eq!(out[0], text("Hello"));
    assert_eq!(last_error(&out).kind, ProviderErrorKind::Timeout);
    assert_eq!(fake.requests().len(), 1, "text went out: no retry");
}

#[tokio::test]
async fn a_cut_mid_stream_is_a_transport_error() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::CutAfter(s(&["Hel"])));
    fake.push(ChatScript::Text(s(&["never"])));
    let out = run(&agent(config(&fake)), turn("Hi", None)).await;
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0], text("Hel"));
    let kind = last_error(&out).kind;
    assert!(matches!(kind, ProviderErrorKind::Transport(_)), "{kind:?}");
    assert_eq!(fake.requests().len(), 1, "text went out: no retry");
}

#[tokio::test]
async fn a_503_then_success_recovers_without_repeating_anything() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::Status(503));
    fake.push(ChatScript::Status(503));
    fake.push(ChatScript::Text(s(&["Recovered", " on the third try."])));
    let out = run(&agent(config(&fake)), turn("Hi", None)).await;
    assert_eq!(out, vec![text("Recovered"), text(" on the third try.")]);
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests.iter().all(|r| *r == requests[0]),
        "every retry sends the same request"
    );
}

#[tokio::test]
async fn a_cut_before_any_output_is_retried() {
    let fake = FakeChat::start().await;
    // The role chunk, then the connection drops: nothing was said yet.
    fake.push(ChatScript::CutAfter(vec![]));
    fake.push(ChatScript::Text(s(&["Second try."])));
    let out = run(&agent(config(&fake)), turn("Hi", None)).await;
    assert_eq!(out, vec![text("Second try.")]);
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn a_timeout_with_time_left_is_retried() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::Delay(
        Duration::from_secs(120),
        Box::new(ChatScript::text(["late"])),
    ));
    fake.push(ChatScript::Text(s(&["Second try."])));
    let mut c = config(&fake);
    // The whole request times out well before the first-token budget ends;
    // the retry has the same generous 5 s to answer, so a slow machine
    // cannot make it time out too and ask a third time.
    c.request_timeout = Duration::from_secs(5);
    c.first_token_timeout = Duration::from_secs(60);
    let (out, _) = run_within(Duration::from_secs(60), &agent(c), turn("Hi", None)).await;
    assert_eq!(out, vec![text("Second try.")]);
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn no_first_token_in_time_ends_the_turn_without_a_retry() {
    let fake = FakeChat::start().await;
    // The role chunk arrives, then nothing: no model output before the
    // deadline, which is also the deadline of any retry.
    fake.push(ChatScript::StallAfter(vec![]));
    fake.push(ChatScript::Text(s(&["never"])));
    let mut c = config(&fake);
    c.first_token_timeout = Duration::from_secs(1);
    let out = run(&agent(c), turn("Hi", None)).await;
    assert_eq!(out.len(), 1);
    assert_eq!(last_error(&out).kind, ProviderErrorKind::Timeout);
    // On a stalled machine the turn may time out before the fake's handler
    // ran; a retry would have been sent before the turn ended.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fake.requests().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_failure_after_a_tool_call_went_out_is_not_retried() {
    let fake = FakeChat::start().await;
    fake.push(ChatScript::ToolCalls {
        text: vec![],
        calls: vec![call("call_1", "book_table", "{}")],
    });
    fake.push(ChatScript::Status(503));
    fake.push(ChatScript::Text(s(&["never"])));
    let host = Arc::new(TestHost::default());
    let out = run(&agent(config(&fake)), turn("Book", Some(host))).await;
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(matches!(out[0], Ok(AgentOutput::ToolCall { .. })));
    assert_eq!(last_error(&out).kind, ProviderErrorKind::Status(503));
    assert_eq!(fake.requests().len(), 2, "the turn had yielded: no retry");
}

/// The fake's non-streaming mode (used by batch jobs such as call summaries)
/// answers `chat.completion` objects that async-openai's own types accept.
#[tokio::test]
async fn the_fake_answers_non_streaming_requests_with_chat_completions() {
    use async_openai::Client;
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{ChatCompletionMessageToolCalls, CreateChatCompletionRequest, FinishReason};

    let fake = FakeChat::start().await;
    fake.push(ChatScript::Text(s(&["A short ", "summary."])));
    fake.push(ChatScript::ToolCalls {
        text: vec![],
        calls: vec![call("call_1", "book_table", r#"{"party":2}"#)],
    });
    let client = Client::with_config(OpenAIConfig::new().with_api_base(fake.base_url()).with_api_key(KEY));
    let request: CreateChatCompletionRequest = serde_json::from_value(json!({
        "model": "test-model", "messages": [{"role": "user", "content": "Summarize"}],
    }))
    .unwrap();

    let text = client.chat().create(request.clone()).await.expect("completion");
    assert_eq!(text.object, "chat.completion");
    assert_eq!(text.choices[0].message.content.as_deref(), Some("A short summary."));
    assert_eq!(text.choices[0].finish_reason, Some(FinishReason::Stop));
    assert!(text.usage.is_some());

    let tools = client.chat().create(request).await.expect("completion");
    assert_eq!(tools.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let calls = tools.choices[0].message.tool_calls.clone().unwrap_or_default();
    let [ChatCompletionMessageToolCalls::Function(call)] = calls.as_slice() else {
        panic!("one function call expected: {calls:?}");
    };
    assert_eq!(
        (call.id.as_str(), call.function.name.as_str()),
        ("call_1", "book_table")
    );
    assert_eq!(call.function.arguments, r#"{"party":2}"#);
    assert_eq!(fake.requests()[0]["stream"], Value::Null, "not a streaming request");
}
