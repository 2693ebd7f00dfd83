//! Live events of a call, as published on the bus (`tenant.{t}.call.{c}`) and
//! relayed to supervisors over `/api/v1/live`.
//!
//! The wire form is one JSON object per event: the common fields
//! (`call_id`, `tenant_id`, `at`) plus a `type` tag and the variant's fields,
//! e.g. `{"type":"transcript_final","speaker":"caller","text":"hi",...}`.

use serde::{Deserialize, Serialize};

use crate::{AgentId, CallId, CallStatus, EndReason, Speaker, TenantId, Timestamp};

/// One thing that happened on a live call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallEvent {
    #[schema(value_type = String)]
    pub call_id: CallId,
    #[schema(value_type = String)]
    pub tenant_id: TenantId,
    /// Wall-clock time the event was produced.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    #[serde(flatten)]
    pub kind: CallEventKind,
}

impl CallEvent {
    pub fn new(call_id: CallId, tenant_id: TenantId, kind: CallEventKind) -> Self {
        Self {
            call_id,
            tenant_id,
            at: crate::now(),
            kind,
        }
    }

    /// The `type` tag, for logs and filters.
    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }
}

/// What happened, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallEventKind {
    /// The media stream started and the call's actor is live.
    CallStarted {
        #[schema(value_type = Option<String>)]
        agent_id: Option<AgentId>,
        from: Option<String>,
        to: Option<String>,
    },
    /// The call moved to a new status.
    StatusChanged {
        #[schema(value_type = String)]
        status: CallStatus,
    },
    /// A hypothesis that may still change.
    TranscriptPartial {
        #[schema(value_type = String)]
        speaker: Speaker,
        text: String,
        turn_id: u32,
    },
    /// A settled line of the transcript, as stored. For the agent, `text` is
    /// what the caller actually heard; `interrupted` says the line was cut.
    TranscriptFinal {
        #[schema(value_type = String)]
        speaker: Speaker,
        text: String,
        turn_id: u32,
        /// Offsets from the start of the call.
        start_ms: u64,
        end_ms: u64,
        interrupted: bool,
    },
    /// The caller talked over the agent: playback was cleared.
    BargeIn {
        turn_id: u32,
        /// Audio of the interrupted reply the caller had heard.
        heard_ms: u64,
        heard_text: String,
    },
    /// Keypad digits.
    Dtmf { digits: String },
    /// The latency figures of one turn.
    TurnLatency(TurnLatency),
    /// The call ended.
    CallEnded {
        #[schema(value_type = String)]
        status: CallStatus,
        #[schema(value_type = String)]
        reason: EndReason,
    },
}

impl CallEventKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::CallStarted { .. } => "call_started",
            Self::StatusChanged { .. } => "status_changed",
            Self::TranscriptPartial { .. } => "transcript_partial",
            Self::TranscriptFinal { .. } => "transcript_final",
            Self::BargeIn { .. } => "barge_in",
            Self::Dtmf { .. } => "dtmf",
            Self::TurnLatency(_) => "turn_latency",
            Self::CallEnded { .. } => "call_ended",
        }
    }
}

/// How long one turn took, in milliseconds, each stage measured from the end
/// of the caller's speech (so the figures only grow along the turn). A stage
/// the turn never reached (a reply cut short, a turn with no speech) is `None`.
/// Turn 0 is the greeting, measured from the start of the media stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TurnLatency {
    pub turn_id: u32,
    /// End of caller speech → final transcript.
    pub stt_final_ms: Option<u32>,
    /// → first token of the agent's reply.
    pub agent_first_token_ms: Option<u32>,
    /// → first synthesized audio.
    pub tts_first_audio_ms: Option<u32>,
    /// → first outbound media frame written to the socket.
    pub first_frame_ms: Option<u32>,
    /// → first mark of the reply echoed back by the carrier (audio played).
    pub mark_confirmed_ms: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_flat_and_tagged() {
        let call = CallId::new();
        let tenant = TenantId::new();
        let event = CallEvent::new(
            call,
            tenant,
            CallEventKind::TranscriptFinal {
                speaker: Speaker::Caller,
                text: "hello".into(),
                turn_id: 3,
                start_ms: 100,
                end_ms: 900,
                interrupted: false,
            },
        );
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "transcript_final");
        assert_eq!(json["speaker"], "caller");
        assert_eq!(json["call_id"], call.to_string());
        assert_eq!(json["turn_id"], 3);
        let back: CallEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);

        let latency = CallEvent::new(
            call,
            tenant,
            CallEventKind::TurnLatency(TurnLatency {
                turn_id: 1,
                stt_final_ms: Some(120),
                ..TurnLatency::default()
            }),
        );
        let json = serde_json::to_value(&latency).unwrap();
        assert_eq!(json["type"], "turn_latency");
        assert_eq!(json["stt_final_ms"], 120);
        assert!(json["mark_confirmed_ms"].is_null());
        assert_eq!(serde_json::from_value::<CallEvent>(json).unwrap(), latency);
    }
}
