//! Provider capabilities as traits (STT, TTS, LLM, telephony, messaging,
//! email) and the adapters behind them.
//!
//! The traits and their adapters arrive with the phone-call and AI-provider
//! work (issues 3 and 4); the crate exists now so the workspace layout and the
//! dependency direction are fixed.
