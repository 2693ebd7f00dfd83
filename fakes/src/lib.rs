//! Local fake servers that speak each provider's real wire protocol.
//!
//! Each fake binds `127.0.0.1:0`, is scripted per test (queue the answers the
//! next requests get: content, an HTTP status, malformed JSON, a stall, a
//! connection cut mid-stream), records the requests it received, and is
//! handed to the production adapters through their base URL. Nothing here is
//! used outside tests and benches.
//!
//! | module | protocol |
//! |---|---|
//! | [`openai_chat`] | `POST /v1/chat/completions`, JSON and SSE with tool-call deltas |
//! | [`openai_realtime`] | the Realtime WebSocket (`/v1/realtime`), beta and GA event names |
//! | [`openai_speech`] | `POST /v1/audio/transcriptions` (multipart), `POST /v1/audio/speech` (streamed pcm) |
//! | [`google_speech`] | `POST /v1/speech:recognize`, `POST /v1/text:synthesize` |
//! | [`twilio_rest`] | `POST /2010-04-01/Accounts/{sid}/Calls/{call}.json` |
//! | [`sendgrid`] | `POST /v3/mail/send` |

pub mod google_speech;
pub mod openai_chat;
pub mod openai_realtime;
pub mod openai_speech;
pub mod sendgrid;
pub mod twilio_rest;
