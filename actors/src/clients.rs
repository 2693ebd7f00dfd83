//! Provider clients: one supervised actor per capability (STT, agent, TTS)
//! of an [`AgentSessionActor`](crate::AgentSessionActor).
//!
//! A client owns its adapter and runs one request at a time inside its
//! handler, streaming results into the request's own channel. That makes a
//! crash (a panic anywhere in the adapter) a crash of the client actor: the
//! request's channel closes without a terminal item, the caller sees a
//! provider failure, and the session, which supervises the client, starts a
//! fresh one with its conversation context untouched.
//!
//! A request whose receiver is dropped (barge-in, an abandoned utterance) is
//! abandoned at the next await: every wait on the provider races the
//! receiver's closing.

use std::sync::Arc;

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use switchboard_providers::{
    AgentOutput, AgentTurn, ConversationAgent, PcmChunk, SpeechToText, StreamConfig, SttEvent, TextToSpeech,
};
use tokio::sync::mpsc;

/// Samples per STT audio message (20 ms at 16 kHz).
pub(crate) const STT_CHUNK: usize = 320;

/// 16 kHz audio for an STT client, fixed-size so queueing it allocates nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SttAudio {
    pub(crate) samples: [i16; STT_CHUNK],
    pub(crate) len: u16,
}

/// What a client streams back for one request: items, then exactly one
/// `Done` or `Failed`. A channel that closes without either means the client
/// crashed mid-request.
#[derive(Debug)]
pub(crate) enum ClientOut<T> {
    Item(T),
    Done,
    Failed(String),
}

/// Which provider client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capability {
    Stt,
    Agent,
    Tts,
}

impl Capability {
    pub(crate) const ALL: [Capability; 3] = [Capability::Stt, Capability::Agent, Capability::Tts];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Stt => "stt",
            Capability::Agent => "agent",
            Capability::Tts => "tts",
        }
    }
}

/// The adapter a client drives.
#[derive(Clone)]
pub(crate) enum Adapter {
    Stt(Arc<dyn SpeechToText>),
    Agent(Arc<dyn ConversationAgent>),
    Tts(Arc<dyn TextToSpeech>),
}

impl Adapter {
    pub(crate) fn capability(&self) -> Capability {
        match self {
            Adapter::Stt(_) => Capability::Stt,
            Adapter::Agent(_) => Capability::Agent,
            Adapter::Tts(_) => Capability::Tts,
        }
    }
}

/// One request to a client.
pub(crate) enum ClientMsg {
    /// Transcribe one caller utterance: audio until `audio` closes, then results.
    Transcribe {
        config: StreamConfig,
        audio: mpsc::Receiver<SttAudio>,
        out: mpsc::Sender<ClientOut<SttEvent>>,
    },
    /// Answer one agent turn.
    Respond {
        turn: Box<AgentTurn>,
        out: mpsc::Sender<ClientOut<AgentOutput>>,
    },
    /// Synthesize one sentence.
    Synthesize {
        text: String,
        voice: String,
        out: mpsc::Sender<ClientOut<PcmChunk>>,
    },
}

impl std::fmt::Debug for ClientMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientMsg::Transcribe { .. } => f.write_str("Transcribe"),
            ClientMsg::Respond { .. } => f.write_str("Respond"),
            ClientMsg::Synthesize { text, .. } => write!(f, "Synthesize({} chars)", text.len()),
        }
    }
}

impl ClientMsg {
    /// Tells the requester that no client took the request.
    pub(crate) fn refuse(self, why: &str) {
        match self {
            ClientMsg::Transcribe { out, .. } => {
                let _ = out.try_send(ClientOut::Failed(why.to_owned()));
            }
            ClientMsg::Respond { out, .. } => {
                let _ = out.try_send(ClientOut::Failed(why.to_owned()));
            }
            ClientMsg::Synthesize { out, .. } => {
                let _ = out.try_send(ClientOut::Failed(why.to_owned()));
            }
        }
    }
}

/// The provider client actor.
pub(crate) struct ProviderClient;

impl Actor for ProviderClient {
    type Msg = ClientMsg;
    type State = Adapter;
    type Arguments = Adapter;

    async fn pre_start(&self, _myself: ActorRef<ClientMsg>, adapter: Adapter) -> Result<Adapter, ActorProcessingErr> {
        Ok(adapter)
    }

    async fn handle(
        &self,
        _myself: ActorRef<ClientMsg>,
        msg: ClientMsg,
        adapter: &mut Adapter,
    ) -> Result<(), ActorProcessingErr> {
        // Panics propagate on purpose: ractor turns them into a failure of
        // this actor, which its session restarts.
        match (msg, &*adapter) {
            (ClientMsg::Transcribe { config, audio, out }, Adapter::Stt(stt)) => {
                let result = abandon_if_closed(&out, transcribe(stt.as_ref(), config, audio, &out)).await;
                finish(&out, result).await;
            }
            (ClientMsg::Respond { turn, out }, Adapter::Agent(agent)) => {
                let result = abandon_if_closed(&out, respond(agent.as_ref(), *turn, &out)).await;
                finish(&out, result).await;
            }
            (ClientMsg::Synthesize { text, voice, out }, Adapter::Tts(tts)) => {
                let result = abandon_if_closed(&out, synthesize(tts.as_ref(), text, voice, &out)).await;
                finish(&out, result).await;
            }
            (msg, adapter) => {
                // A routing bug, not a provider fault: refuse, stay up.
                tracing::error!(request = ?msg, client = adapter.capability().as_str(), "request sent to the wrong client");
                msg.refuse("request sent to the wrong provider client");
            }
        }
        Ok(())
    }
}

/// `Some(result)` when `work` ran to its end, `None` when the requester went away first.
async fn abandon_if_closed<T, F>(out: &mpsc::Sender<ClientOut<T>>, work: F) -> Option<Result<(), String>>
where
    F: std::future::Future<Output = Result<(), String>>,
{
    tokio::select! {
        result = work => Some(result),
        () = out.closed() => None,
    }
}

async fn finish<T>(out: &mpsc::Sender<ClientOut<T>>, result: Option<Result<(), String>>) {
    let last = match result {
        Some(Ok(())) => ClientOut::Done,
        Some(Err(err)) => ClientOut::Failed(err),
        None => return,
    };
    let _ = out.send(last).await;
}

/// Sends one item; `Err` when the requester is gone (the request is over).
async fn emit<T>(out: &mpsc::Sender<ClientOut<T>>, item: T) -> Result<(), String> {
    out.send(ClientOut::Item(item))
        .await
        .map_err(|_| "requester gone".to_owned())
}

async fn transcribe(
    stt: &dyn SpeechToText,
    config: StreamConfig,
    mut audio: mpsc::Receiver<SttAudio>,
    out: &mpsc::Sender<ClientOut<SttEvent>>,
) -> Result<(), String> {
    let mut stream = stt.start(config).await.map_err(|e| e.to_string())?;
    while let Some(chunk) = audio.recv().await {
        let n = usize::from(chunk.len).min(STT_CHUNK);
        stream
            .push_audio(&chunk.samples[..n])
            .await
            .map_err(|e| e.to_string())?;
    }
    stream.finish().await.map_err(|e| e.to_string())?;
    while let Some(event) = stream.next_event().await.map_err(|e| e.to_string())? {
        emit(out, event).await?;
    }
    Ok(())
}

async fn respond(
    agent: &dyn ConversationAgent,
    turn: AgentTurn,
    out: &mpsc::Sender<ClientOut<AgentOutput>>,
) -> Result<(), String> {
    let mut outputs = agent.respond(turn);
    while let Some(output) = outputs.next().await {
        emit(out, output.map_err(|e| e.to_string())?).await?;
    }
    Ok(())
}

async fn synthesize(
    tts: &dyn TextToSpeech,
    text: String,
    voice: String,
    out: &mpsc::Sender<ClientOut<PcmChunk>>,
) -> Result<(), String> {
    let mut audio = tts.synthesize(text, voice);
    while let Some(chunk) = audio.next().await {
        emit(out, chunk.map_err(|e| e.to_string())?).await?;
    }
    Ok(())
}
