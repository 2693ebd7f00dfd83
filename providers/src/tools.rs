//! Tools an agent may call, as seen by the agent.
//!
//! A [`ToolHost`] is built per conversation (it knows the call, tenant and
//! contact) and lists only the tools the agent enables. The LLM agent offers
//! [`ToolHost::specs`] to the model and runs the calls the model asks for
//! through [`ToolHost::call`].
//!
//! Guarantees: a tool call never fails the turn. Unknown tools, arguments that
//! do not match the schema and failures of the tool itself all come back as a
//! [`ToolResult`] whose `content` is `{"error": {"code", "message"}}`, which
//! goes back to the model as the tool's result.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::capability::AgentAction;

/// One tool as offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Function name, e.g. `book_appointment`.
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

/// The outcome of one tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    /// What the model sees as the tool's result.
    pub content: Value,
    /// What the tool asks of the call once the reply has been heard
    /// (`end_call`: hang up, `transfer_call`: transfer).
    pub action: Option<AgentAction>,
}

impl ToolResult {
    /// A successful result with no effect on the call.
    pub fn ok(content: Value) -> Self {
        Self { content, action: None }
    }

    /// A failed call, reported to the model as `{"error": {code, message}}`.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self {
            content: json!({ "error": { "code": code, "message": message.into() } }),
            action: None,
        }
    }

    /// Whether this result reports an error.
    pub fn is_error(&self) -> bool {
        self.content.get("error").is_some()
    }
}

/// The tools of one conversation.
pub trait ToolHost: Send + Sync + 'static {
    /// The enabled tools, in a stable order.
    fn specs(&self) -> Vec<ToolSpec>;

    /// Runs tool `name` with the model's raw JSON `arguments` text.
    fn call(&self, name: String, arguments: String) -> BoxFuture<'static, ToolResult>;
}

/// What an agent knows about the conversation besides its history: the tools
/// it may call and facts about the contact. Compared by identity of the tool
/// host.
#[derive(Clone, Default)]
pub struct TurnContext {
    pub tools: Option<Arc<dyn ToolHost>>,
    /// Known facts about the contact ("Name: Ada Lovelace", ...), for the
    /// system prompt.
    pub facts: Vec<String>,
}

impl std::fmt::Debug for TurnContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnContext")
            .field("tools", &self.tools.as_ref().map(|t| t.specs().len()))
            .field("facts", &self.facts)
            .finish()
    }
}

impl PartialEq for TurnContext {
    fn eq(&self, other: &Self) -> bool {
        let same_tools = match (&self.tools, &other.tools) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_tools && self.facts == other.facts
    }
}

impl Eq for TurnContext {}
