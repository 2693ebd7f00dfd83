//! Twilio voice: webhook signatures, typed webhook forms and TwiML.
//!
//! Everything here is pure (no I/O), so the API layer and the test clients
//! share one implementation of the wire format.

pub mod rest;
pub mod signature;
pub mod twiml;
pub mod webhook;
