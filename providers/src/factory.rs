//! Choosing adapters for a call from its agent's configuration.
//!
//! The API asks a [`ProviderFactory`] for a call's [`CallProviders`] when the
//! media stream starts; the call actor only ever sees the traits. Tests swap
//! the factory to inject failing or scripted providers through the real
//! webhook and media path.

use std::sync::Arc;

use futures::future::BoxFuture;
use switchboard_domain::{Agent, TenantId};

use crate::capability::{ConversationAgent, SpeechToText, Telephony, TextToSpeech};
use crate::error::ProviderError;
use crate::realtime::RealtimeConfig;
use crate::tools::TurnContext;

/// The adapters one call talks to.
#[derive(Clone)]
pub struct CallProviders {
    pub stt: Arc<dyn SpeechToText>,
    pub tts: Arc<dyn TextToSpeech>,
    pub agent: Arc<dyn ConversationAgent>,
    /// Control of the call at the carrier (transfer, hang-up); `None` when the
    /// tenant has no carrier credentials, in which case ending the media
    /// stream is how the engine hangs up.
    pub telephony: Option<Arc<dyn Telephony>>,
    /// The call's tools and contact facts, handed to the agent each turn.
    pub context: TurnContext,
    /// The agent's secondary providers, switched to when a primary fails.
    pub backup: BackupProviders,
    /// Set for agents in OpenAI Realtime (speech-to-speech) mode: the call
    /// streams μ-law to this session instead of `stt` → `agent` → `tts`.
    pub realtime: Option<RealtimeConfig>,
}

/// Secondary providers of a call (`settings.fallback_providers` of the agent).
/// Each is used from the first failure of its primary on, for the rest of
/// the call.
#[derive(Clone, Default)]
pub struct BackupProviders {
    pub stt: Option<Arc<dyn SpeechToText>>,
    pub tts: Option<Arc<dyn TextToSpeech>>,
    pub agent: Option<Arc<dyn ConversationAgent>>,
}

impl std::fmt::Debug for BackupProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupProviders")
            .field("stt", &self.stt.is_some())
            .field("tts", &self.tts.is_some())
            .field("agent", &self.agent.is_some())
            .finish()
    }
}

impl std::fmt::Debug for CallProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallProviders")
            .field("telephony", &self.telephony.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds the adapters for a call of `agent` (owned by `tenant`).
pub trait ProviderFactory: Send + Sync + 'static {
    fn for_call<'a>(
        &'a self,
        tenant: TenantId,
        agent: &'a Agent,
    ) -> BoxFuture<'a, Result<CallProviders, ProviderError>>;
}
