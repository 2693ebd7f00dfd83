//! Switchboard's sans-IO media core.
//!
//! Synchronous and pure: bytes and time go in, frames, events and deadlines
//! come out. The call actor owns the socket and the clock; every function here
//! takes the current time as an argument. Nothing allocates on the per-frame
//! path once the objects are built (proved by `tests/no_alloc.rs`).
//!
//! # Layout
//! - [`ulaw`]: G.711 μ-law encode/decode, bit-exact with the reference.
//! - [`twilio`]: Twilio Media Streams messages, parsed without allocation on the media path.
//! - [`resample`]: anti-aliased fixed-ratio resampling (8k <-> 16k, TTS rates -> 8k).
//! - [`vad`]: voice activity scoring and the [`vad::TurnDetector`] turn/barge-in state machine.
//! - [`inbound`]: the caller-audio path per Twilio frame (base64 -> μ-law -> 16 kHz -> VAD).
//! - [`player`]: the outbound player: TTS chunks -> paced 20 ms μ-law frames, marks ledger, barge-in.
//! - [`wav`]: stereo call recording (caller left, bot right) and a mono WAV reader/writer.

pub mod inbound;
pub mod player;
pub mod resample;
pub mod twilio;
pub mod ulaw;
pub mod vad;
pub mod wav;
