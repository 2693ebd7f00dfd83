//! A synthetic Twilio caller: it places a call on a Switchboard engine the way
//! Twilio does and holds it like a phone would.
//!
//! It POSTs the signed voice webhook, reads the TwiML, opens the Media Stream,
//! speaks 8 kHz audio in real-time 20 ms μ-law frames, plays the engine's
//! audio back through an emulated Twilio playout queue (echoing marks when
//! their audio has played, honouring `clear`), records what the bot said on
//! the stream clock and reports timings. The `switchboard call` CLI, the
//! end-to-end tests and the load tool all use it.
//!
//! Guarantees: wire formats follow protocols.md §1–2 exactly (the engine's own
//! parser reads everything this crate writes, which the tests check); event
//! times are stream times derived from the frame count, so they do not depend
//! on scheduling jitter; nothing panics on input from the network.
//!
//! TLS (`https://`/`wss://` engines) goes through rustls with the webpki
//! roots and the process's single rustls crypto provider (ring, as reqwest
//! uses); if a binary ever links two providers it must install one with
//! `CryptoProvider::install_default` before placing calls.
//!
//! # Layout
//! - [`call`]: [`CallOptions`], [`place_call`], [`CallReport`], [`CallerEvent`].
//! - [`playout`]: Twilio's playout queue and mark ledger, sans-IO.
//! - [`schedule`]: the caller's audio on the stream clock, with its speech spans.
//! - [`wire`]: Twilio's side of the Media Streams messages.
//! - [`twiml`]: reading the webhook's TwiML answer.
//! - [`live`]: [`live::login`] and [`live::watch`] (the supervisor's live event socket).
//! - [`audio`]: [`audio::load_wav_8k`], any 16-bit PCM WAV to 8 kHz mono.
//! - [`error`]: the one error type, [`CallerError`].

pub mod audio;
pub mod call;
pub mod error;
pub mod live;
pub mod playout;
pub mod schedule;
pub mod twiml;
pub mod wire;

pub use call::{CallOptions, CallReport, CallerEvent, Hangup, place_call};
pub use error::CallerError;
