//! The rule-based conversation agent: the offline default and the
//! deterministic agent for tests.
//!
//! Configuration lives in the agent's `settings` JSON:
//!
//! ```json
//! {"rules": [
//!    {"pattern": "book|appointment", "reply": "Sure, what time?", "action": null},
//!    {"pattern": "bye|goodbye", "reply": "Goodbye!", "action": "hangup"},
//!    {"pattern": "human|operator", "reply": "Transferring you now.", "action": {"transfer": "+15551230000"}},
//!    {"dtmf": "1", "reply": "Connecting you to sales.", "action": {"transfer": "+15551230001"}}
//!  ],
//!  "fallback": "Sorry, could you say that again?"}
//! ```
//!
//! Matching: `pattern` is a regular expression (the `regex` crate's syntax),
//! matched case-insensitively *anywhere* in the caller's utterance, so
//! `book` also matches "booking"; write `\bbook\b` for whole words. A `dtmf`
//! rule matches when the pressed digits equal its value exactly. Speech
//! rules never match key presses and vice versa. Rules are tried in order and
//! the first match wins; with no match the agent says `fallback`.
//!
//! `action` is `null`/absent, `"hangup"`, `"end"` or `{"transfer": "<E.164>"}`.
//!
//! Guarantees: the whole configuration is parsed and validated once, in
//! [`RuleAgent::from_settings`]; errors name the index of the bad rule; bad
//! configuration is an error, never a panic. After construction, responding
//! cannot fail.

use futures::stream::{self, BoxStream, StreamExt};
use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use switchboard_domain::E164;

use crate::capability::{AgentAction, AgentOutput, AgentTurn, ConversationAgent, TurnInput};
use crate::error::ProviderError;

/// Said when no rule matches and the settings name no fallback.
pub const DEFAULT_FALLBACK: &str = "Sorry, could you say that again?";

/// Upper bound on a compiled pattern, so a hostile config cannot make the
/// engine build a huge automaton.
const MAX_REGEX_SIZE: usize = 1 << 20;

/// Why the rule configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("agent settings must be a JSON object")]
    SettingsNotObject,
    #[error("`rules` must be an array")]
    RulesNotArray,
    #[error("`fallback` must be a string")]
    FallbackNotString,
    #[error("rule {index}: {reason}")]
    Rule { index: usize, reason: String },
}

impl From<RulesError> for ProviderError {
    fn from(e: RulesError) -> Self {
        ProviderError::new(
            RuleAgent::PROVIDER,
            crate::error::ProviderErrorKind::Config(e.to_string()),
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    pattern: Option<String>,
    dtmf: Option<String>,
    #[serde(default)]
    reply: String,
    #[serde(default)]
    action: Option<RawAction>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawAction {
    Named(String),
    Transfer { transfer: String },
}

#[derive(Debug, Clone)]
enum Trigger {
    Speech(Regex),
    Dtmf(String),
}

#[derive(Debug, Clone)]
struct Rule {
    trigger: Trigger,
    reply: String,
    action: Option<AgentAction>,
}

/// A validated, ordered set of rules plus the fallback reply.
#[derive(Debug, Clone)]
pub struct RuleAgent {
    rules: Vec<Rule>,
    fallback: String,
}

impl RuleAgent {
    /// Name used in [`ProviderError::provider`].
    pub const PROVIDER: &'static str = "rules";

    /// Parses and validates the agent's `settings`. Missing `rules` means no
    /// rules (the agent always answers with the fallback).
    pub fn from_settings(settings: &serde_json::Value) -> Result<Self, RulesError> {
        let obj = settings.as_object().ok_or(RulesError::SettingsNotObject)?;
        let fallback = match obj.get("fallback") {
            None | Some(serde_json::Value::Null) => DEFAULT_FALLBACK.to_owned(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(_) => return Err(RulesError::FallbackNotString),
        };
        let raw_rules = match obj.get("rules") {
            None | Some(serde_json::Value::Null) => &[][..],
            Some(serde_json::Value::Array(a)) => a.as_slice(),
            Some(_) => return Err(RulesError::RulesNotArray),
        };
        let rules = raw_rules
            .iter()
            .enumerate()
            .map(|(index, value)| parse_rule(value).map_err(|reason| RulesError::Rule { index, reason }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { rules, fallback })
    }

    /// The outputs for one turn, without the stream wrapper.
    pub fn reply(&self, input: &TurnInput) -> Vec<AgentOutput> {
        let matched = self.rules.iter().find(|rule| match (&rule.trigger, input) {
            (Trigger::Speech(re), TurnInput::UserText(text)) => re.is_match(text),
            (Trigger::Dtmf(digits), TurnInput::Dtmf(pressed)) => digits == pressed,
            _ => false,
        });
        match matched {
            Some(rule) => {
                let mut out = Vec::with_capacity(2);
                if !rule.reply.is_empty() {
                    out.push(AgentOutput::Text(rule.reply.clone()));
                }
                if let Some(action) = &rule.action {
                    out.push(AgentOutput::Action(action.clone()));
                }
                out
            }
            None => vec![AgentOutput::Text(self.fallback.clone())],
        }
    }
}

fn parse_rule(value: &serde_json::Value) -> Result<Rule, String> {
    let raw = RawRule::deserialize(value).map_err(|e| e.to_string())?;
    let trigger = match (raw.pattern, raw.dtmf) {
        (Some(_), Some(_)) => return Err("has both `pattern` and `dtmf`; use one".to_owned()),
        (None, None) => return Err("needs a `pattern` or a `dtmf`".to_owned()),
        (Some(pattern), None) => {
            if pattern.trim().is_empty() {
                return Err("`pattern` is empty and would match everything".to_owned());
            }
            let re = RegexBuilder::new(&pattern)
                .case_insensitive(true)
                .size_limit(MAX_REGEX_SIZE)
                .build()
                .map_err(|e| format!("invalid `pattern`: {e}"))?;
            Trigger::Speech(re)
        }
        (None, Some(dtmf)) => {
            if dtmf.is_empty() || !dtmf.chars().all(|c| c.is_ascii_digit() || c == '*' || c == '#') {
                return Err(format!("`dtmf` must be keypad keys 0-9, * or #, got `{dtmf}`"));
            }
            Trigger::Dtmf(dtmf)
        }
    };
    let action = match raw.action {
        None => None,
        Some(RawAction::Named(name)) => match name.as_str() {
            "hangup" => Some(AgentAction::Hangup),
            "end" => Some(AgentAction::End),
            other => {
                return Err(format!(
                    "unknown `action` `{other}`; expected hangup, end or {{\"transfer\": ..}}"
                ));
            }
        },
        Some(RawAction::Transfer { transfer }) => {
            let number = E164::parse(&transfer).map_err(|e| format!("transfer number `{transfer}`: {e}"))?;
            Some(AgentAction::Transfer(number))
        }
    };
    if raw.reply.is_empty() && action.is_none() {
        return Err("needs a `reply`, an `action` or both".to_owned());
    }
    Ok(Rule {
        trigger,
        reply: raw.reply,
        action,
    })
}

impl ConversationAgent for RuleAgent {
    fn respond(&self, turn: AgentTurn) -> BoxStream<'static, Result<AgentOutput, ProviderError>> {
        stream::iter(self.reply(&turn.input).into_iter().map(Ok)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use serde_json::json;

    fn example() -> serde_json::Value {
        json!({
            "rules": [
                {"pattern": "book|appointment", "reply": "Sure, what time?", "action": null},
                {"pattern": "bye|goodbye", "reply": "Goodbye!", "action": "hangup"},
                {"pattern": "human|operator", "reply": "Transferring you now.", "action": {"transfer": "+15551230000"}},
                {"dtmf": "1", "reply": "Sales, one moment.", "action": {"transfer": "+15551230001"}},
                {"dtmf": "9", "action": "end"},
                {"pattern": "appointment", "reply": "never reached: an earlier rule matches first"}
            ],
            "fallback": "Sorry, could you say that again?"
        })
    }

    fn agent() -> RuleAgent {
        RuleAgent::from_settings(&example()).expect("valid rules")
    }

    fn say(text: &str) -> TurnInput {
        TurnInput::UserText(text.into())
    }

    fn text(s: &str) -> AgentOutput {
        AgentOutput::Text(s.into())
    }

    fn collect(agent: &dyn ConversationAgent, input: TurnInput) -> Vec<AgentOutput> {
        let stream = agent.respond(AgentTurn {
            input,
            history: vec![],
            context: Default::default(),
        });
        block_on(stream.map(|r| r.expect("rule agent never fails")).collect::<Vec<_>>())
    }

    #[test]
    fn matches_case_insensitively_anywhere_in_the_utterance() {
        let a = agent();
        assert_eq!(
            a.reply(&say("I'd like to BOOK a table")),
            vec![text("Sure, what time?")]
        );
        assert_eq!(a.reply(&say("Appointment please")), vec![text("Sure, what time?")]);
    }

    #[test]
    fn first_match_wins() {
        // "appointment" and "bye" both appear; rule 0 precedes rule 1 and rule 5.
        assert_eq!(
            agent().reply(&say("appointment, then bye")),
            vec![text("Sure, what time?")]
        );
    }

    #[test]
    fn actions_follow_their_reply() {
        let a = agent();
        assert_eq!(
            a.reply(&say("ok goodbye")),
            vec![text("Goodbye!"), AgentOutput::Action(AgentAction::Hangup)]
        );
        let n = E164::parse("+15551230000").expect("e164");
        assert_eq!(
            a.reply(&say("get me an operator")),
            vec![
                text("Transferring you now."),
                AgentOutput::Action(AgentAction::Transfer(n))
            ]
        );
    }

    #[test]
    fn dtmf_rules_match_key_presses_only() {
        let a = agent();
        let n = E164::parse("+15551230001").expect("e164");
        assert_eq!(
            a.reply(&TurnInput::Dtmf("1".into())),
            vec![
                text("Sales, one moment."),
                AgentOutput::Action(AgentAction::Transfer(n))
            ]
        );
        assert_eq!(
            a.reply(&TurnInput::Dtmf("9".into())),
            vec![AgentOutput::Action(AgentAction::End)]
        );
        // Saying "1" is not pressing 1, and an unknown key gets the fallback.
        assert_eq!(a.reply(&say("1")), vec![text(DEFAULT_FALLBACK)]);
        assert_eq!(a.reply(&TurnInput::Dtmf("12".into())), vec![text(DEFAULT_FALLBACK)]);
    }

    #[test]
    fn unmatched_input_gets_the_fallback() {
        let a = RuleAgent::from_settings(&json!({"rules": [], "fallback": "Pardon?"})).expect("valid");
        assert_eq!(a.reply(&say("anything")), vec![text("Pardon?")]);
        let a = RuleAgent::from_settings(&json!({})).expect("empty settings are valid");
        assert_eq!(a.reply(&say("anything")), vec![text(DEFAULT_FALLBACK)]);
    }

    #[test]
    fn respond_streams_the_same_outputs_through_the_trait() {
        let a = agent();
        assert_eq!(
            collect(&a, say("bye")),
            vec![text("Goodbye!"), AgentOutput::Action(AgentAction::Hangup)]
        );
    }

    fn rule_error(settings: serde_json::Value) -> (usize, String) {
        match RuleAgent::from_settings(&settings) {
            Err(RulesError::Rule { index, reason }) => (index, reason),
            other => panic!("expected a rule error, got {other:?}"),
        }
    }

    #[test]
    fn bad_rules_are_reported_with_their_index() {
        let ok = json!({"pattern": "hi", "reply": "Hello"});
        let cases = [
            (json!({"pattern": "(unclosed", "reply": "x"}), "invalid `pattern`"),
            (json!({"pattern": "", "reply": "x"}), "empty"),
            (json!({"reply": "x"}), "needs a `pattern` or a `dtmf`"),
            (json!({"pattern": "a", "dtmf": "1", "reply": "x"}), "both"),
            (json!({"dtmf": "1a", "reply": "x"}), "keypad"),
            (
                json!({"pattern": "a", "reply": "x", "action": "explode"}),
                "unknown `action`",
            ),
            (
                json!({"pattern": "a", "reply": "x", "action": {"transfer": "5551230000"}}),
                "transfer number",
            ),
            (json!({"pattern": "a"}), "needs a `reply`"),
            (json!({"pattern": "a", "reply": "x", "colour": "red"}), "unknown field"),
            (json!("not an object"), "invalid type"),
        ];
        for (bad, needle) in cases {
            let (index, reason) = rule_error(json!({"rules": [ok.clone(), bad.clone()]}));
            assert_eq!(index, 1, "{bad}");
            assert!(reason.contains(needle), "{bad}: {reason}");
        }
    }

    #[test]
    fn bad_top_level_shapes_are_errors() {
        assert_eq!(
            RuleAgent::from_settings(&json!([])).unwrap_err(),
            RulesError::SettingsNotObject
        );
        assert_eq!(
            RuleAgent::from_settings(&json!({"rules": {}})).unwrap_err(),
            RulesError::RulesNotArray
        );
        assert_eq!(
            RuleAgent::from_settings(&json!({"fallback": 3})).unwrap_err(),
            RulesError::FallbackNotString
        );
    }

    #[test]
    fn oversized_patterns_are_rejected_not_compiled() {
        // Unicode `\w` repeated 100k times compiles to far more than the 1 MiB limit.
        let huge = r"(?:\w{1000}){100}";
        let (index, reason) = rule_error(json!({"rules": [{"pattern": huge, "reply": "x"}]}));
        assert_eq!(index, 0);
        assert!(reason.contains("invalid `pattern`"), "{reason}");
    }

    #[test]
    fn config_errors_convert_to_provider_errors() {
        let err: ProviderError = RulesError::Rule {
            index: 2,
            reason: "bad".into(),
        }
        .into();
        assert_eq!(err.provider, "rules");
        assert_eq!(err.kind, crate::error::ProviderErrorKind::Config("rule 2: bad".into()));
    }
}
