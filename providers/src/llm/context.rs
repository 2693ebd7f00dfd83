//! The chat messages of one turn, trimmed to a token budget.
//!
//! Pure and synchronous: history and input go in, `messages` come out.
//!
//! **Token estimate.** We do not ship a tokenizer per model; instead every
//! message costs `ceil(chars / 4) + 4` tokens ([`CHARS_PER_TOKEN`],
//! [`MESSAGE_OVERHEAD_TOKENS`]). Four characters per token is OpenAI's own
//! rule of thumb for English, and the overhead covers the role and framing
//! tokens each message carries. Offered tools count the same way, over the
//! text of their name, description and JSON schema. The estimate is coarse
//! on purpose: `max_context_tokens` should leave headroom below the model's
//! real window.
//!
//! **Trimming.** The system prompt (with the caller facts), the offered tools
//! and the current input are always sent, even if they alone exceed the
//! budget. History is added newest first while it fits; the first entry that
//! does not fit ends the walk, so what is sent is always a contiguous recent
//! stretch of the conversation (never an old line with a gap after it).

use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
};

use crate::capability::{HistoryEntry, Speaker, TurnInput};
use crate::tools::ToolSpec;

/// Characters counted as one token by the estimate.
pub const CHARS_PER_TOKEN: usize = 4;
/// Tokens added per message for its role and framing.
pub const MESSAGE_OVERHEAD_TOKENS: usize = 4;

/// Estimated tokens of one message with this text.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS
}

/// Estimated tokens of the tool definitions offered with a request.
pub fn estimate_tool_tokens(specs: &[ToolSpec]) -> usize {
    specs
        .iter()
        .map(|s| estimate_tokens(&format!("{}{}{}", s.name, s.description, s.parameters)))
        .sum()
}

/// The system message text: the prompt, then the known facts on one line.
pub fn system_text(system_prompt: &str, facts: &[String]) -> String {
    let prompt = system_prompt.trim();
    let facts: Vec<&str> = facts.iter().map(|f| f.trim()).filter(|f| !f.is_empty()).collect();
    match (prompt.is_empty(), facts.is_empty()) {
        (_, true) => prompt.to_owned(),
        (true, false) => format!("Known facts about the caller: {}", facts.join("; ")),
        (false, false) => format!("{prompt}\n\nKnown facts about the caller: {}", facts.join("; ")),
    }
}

/// The user message text for the caller's input.
pub fn input_text(input: &TurnInput) -> String {
    match input {
        TurnInput::UserText(text) => text.clone(),
        TurnInput::Dtmf(digits) => format!("[The caller pressed keys: {digits}]"),
    }
}

/// The request messages of a turn and what trimming did.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub messages: Vec<ChatCompletionRequestMessage>,
    /// History entries left out, oldest first, to fit the budget.
    pub dropped: usize,
    /// The estimate of what is sent, tools included.
    pub estimated_tokens: usize,
}

/// Builds the messages: system (prompt + facts), the recent history that fits
/// `budget` after the mandatory parts (`tool_tokens` included), then the input.
pub fn build_prompt(
    system_prompt: &str,
    facts: &[String],
    history: &[HistoryEntry],
    input: &TurnInput,
    tool_tokens: usize,
    budget: usize,
) -> Prompt {
    let system = system_text(system_prompt, facts);
    let input = input_text(input);
    let mut used = tool_tokens + estimate_tokens(&input);
    if !system.is_empty() {
        used += estimate_tokens(&system);
    }

    let history: Vec<&HistoryEntry> = history.iter().filter(|h| !h.text.trim().is_empty()).collect();
    let mut kept = 0;
    for entry in history.iter().rev() {
        let cost = estimate_tokens(&history_text(entry));
        if used + cost > budget {
            break;
        }
        used += cost;
        kept += 1;
    }
    let dropped = history.len() - kept;

    let mut messages = Vec::with_capacity(kept + 2);
    if !system.is_empty() {
        messages.push(system_message(system));
    }
    messages.extend(history[dropped..].iter().map(|entry| history_message(entry)));
    messages.push(user_message(input));
    Prompt {
        messages,
        dropped,
        estimated_tokens: used,
    }
}

fn history_text(entry: &HistoryEntry) -> String {
    match entry.speaker {
        Speaker::Caller | Speaker::Agent => entry.text.clone(),
        Speaker::Tool => format!("Tool call: {}", entry.text),
    }
}

fn history_message(entry: &HistoryEntry) -> ChatCompletionRequestMessage {
    let text = history_text(entry);
    match entry.speaker {
        Speaker::Caller => user_message(text),
        Speaker::Agent => ChatCompletionRequestAssistantMessage {
            content: Some(ChatCompletionRequestAssistantMessageContent::Text(text)),
            ..Default::default()
        }
        .into(),
        // Earlier tool calls are notes, not `tool` messages: their call ids
        // and the assistant message that asked for them are not kept.
        Speaker::Tool => system_message(text),
    }
}

fn system_message(text: String) -> ChatCompletionRequestMessage {
    ChatCompletionRequestSystemMessage::from(text).into()
}

fn user_message(text: String) -> ChatCompletionRequestMessage {
    ChatCompletionRequestUserMessage::from(text).into()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn entry(speaker: Speaker, text: &str) -> HistoryEntry {
        HistoryEntry {
            speaker,
            text: text.to_owned(),
        }
    }

    fn wire(prompt: &Prompt) -> Vec<Value> {
        prompt
            .messages
            .iter()
            .map(|m| serde_json::to_value(m).expect("serializes"))
            .collect()
    }

    #[test]
    fn estimate_is_a_quarter_of_the_chars_plus_overhead() {
        assert_eq!(estimate_tokens(""), 4);
        assert_eq!(estimate_tokens("abcd"), 5);
        assert_eq!(estimate_tokens("abcde"), 6);
        // Characters, not bytes.
        assert_eq!(estimate_tokens("éééé"), 5);
    }

    #[test]
    fn maps_speakers_facts_and_dtmf() {
        let history = [
            entry(Speaker::Caller, "hi"),
            entry(Speaker::Agent, "hello"),
            entry(Speaker::Tool, "lookup({}) -> {\"ok\":true}"),
        ];
        let facts = ["Name: Ada".to_owned(), "VIP".to_owned()];
        let p = build_prompt("Be brief.", &facts, &history, &TurnInput::Dtmf("12#".into()), 0, 10_000);
        assert_eq!(p.dropped, 0);
        assert_eq!(
            wire(&p),
            vec![
                json!({"role": "system", "content": "Be brief.\n\nKnown facts about the caller: Name: Ada; VIP"}),
                json!({"role": "user", "content": "hi"}),
                json!({"role": "assistant", "content": "hello"}),
                json!({"role": "system", "content": "Tool call: lookup({}) -> {\"ok\":true}"}),
                json!({"role": "user", "content": "[The caller pressed keys: 12#]"}),
            ]
        );
    }

    #[test]
    fn trims_oldest_history_first_to_fit_the_budget() {
        // Each history line is 40 chars: 10 + 4 = 14 tokens.
        let line = |n: usize| format!("{n:0>40}");
        let history: Vec<HistoryEntry> = (0..10).map(|n| entry(Speaker::Caller, &line(n))).collect();
        let input = TurnInput::UserText("abcd".into()); // 5 tokens
        let system = "abcdefgh"; // 6 tokens
        // Mandatory 11 + 3 lines (42) = 53 fits; a fourth line (67) does not.
        let p = build_prompt(system, &[], &history, &input, 0, 60);
        assert_eq!(p.dropped, 7);
        assert_eq!(p.estimated_tokens, 53);
        let sent: Vec<Value> = wire(&p).iter().map(|m| m["content"].clone()).collect();
        assert_eq!(
            sent,
            vec![
                json!(system),
                json!(line(7)),
                json!(line(8)),
                json!(line(9)),
                json!("abcd")
            ]
        );
        // Tools count against the same budget.
        let p = build_prompt(system, &[], &history, &input, 14, 60);
        assert_eq!(p.dropped, 8);
    }

    #[test]
    fn a_big_recent_line_ends_the_walk_and_mandatory_parts_always_stay() {
        let history = [
            entry(Speaker::Caller, "old"),
            entry(Speaker::Agent, &"x".repeat(400)),
            entry(Speaker::Caller, "new"),
        ];
        let p = build_prompt("sys", &[], &history, &TurnInput::UserText("now".into()), 0, 30);
        // "new" fits; the 104-token line does not, so "old" is not sent either.
        assert_eq!(p.dropped, 2);
        assert_eq!(p.messages.len(), 3);
        // A budget below the mandatory parts still sends system and input.
        let p = build_prompt("sys", &[], &history, &TurnInput::UserText("now".into()), 0, 1);
        assert_eq!(p.dropped, 3);
        assert_eq!(
            wire(&p),
            vec![
                json!({"role": "system", "content": "sys"}),
                json!({"role": "user", "content": "now"})
            ]
        );
    }
}
