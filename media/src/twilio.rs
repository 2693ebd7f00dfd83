//! Twilio Media Streams wire format, parsed at the edge into typed events.
//!
//! Inbound frames are JSON text with an `event` discriminator. Parsing borrows
//! from the frame (`&str` fields), and the μ-law payload is base64-decoded into
//! a caller-owned buffer, so a `media` frame is handled without allocating.
//! Outbound messages are written into a reused `String`.
//!
//! Unknown fields are ignored (Twilio adds fields over time); unknown events
//! are reported as [`WireError::UnknownEvent`] so the caller can log and skip them.

use base64::Engine as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write as _;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why an inbound frame could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame is {len} bytes, over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("unknown event `{0}`")]
    UnknownEvent(String),
    #[error("media payload is not valid base64")]
    Base64,
    #[error("media payload of {len} bytes does not fit the {cap}-byte buffer")]
    PayloadTooLarge { len: usize, cap: usize },
    #[error("`{field}` must be a decimal number, got `{value}`")]
    BadNumber { field: &'static str, value: String },
}

/// One inbound message from Twilio, borrowing from the frame text.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundEvent<'a> {
    Connected { protocol: &'a str, version: &'a str },
    Start(Start<'a>),
    Media(Media<'a>),
    Dtmf { stream_sid: &'a str, digit: &'a str },
    Mark { stream_sid: &'a str, name: &'a str },
    Stop { stream_sid: &'a str, call_sid: &'a str },
}

/// The `start` message: stream metadata and our `<Parameter>`s.
#[derive(Debug, Clone, PartialEq)]
pub struct Start<'a> {
    pub stream_sid: &'a str,
    pub account_sid: &'a str,
    pub call_sid: &'a str,
    pub tracks: Vec<&'a str>,
    pub custom_parameters: HashMap<&'a str, &'a str>,
    pub encoding: &'a str,
    pub sample_rate: u32,
    pub channels: u32,
}

/// A `media` message; `payload` is still base64 (see [`Media::decode_payload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Media<'a> {
    pub stream_sid: &'a str,
    pub track: &'a str,
    pub chunk: u64,
    /// Milliseconds since the stream started.
    pub timestamp_ms: u64,
    pub payload_b64: &'a str,
}

impl Media<'_> {
    /// Decode the μ-law payload into `out`; returns the number of bytes.
    pub fn decode_payload(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let cap = out.len();
        let needed = base64::decoded_len_estimate(self.payload_b64.len());
        if needed > cap + 2 {
            return Err(WireError::PayloadTooLarge { len: needed, cap });
        }
        B64.decode_slice(self.payload_b64.as_bytes(), out).map_err(|e| match e {
            base64::DecodeSliceError::OutputSliceTooSmall => WireError::PayloadTooLarge { len: needed, cap },
            base64::DecodeSliceError::DecodeError(_) => WireError::Base64,
        })
    }
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(default, borrow, rename = "streamSid")]
    stream_sid: Option<&'a str>,
    #[serde(default, borrow)]
    protocol: Option<&'a str>,
    #[serde(default, borrow)]
    version: Option<&'a str>,
    #[serde(default, borrow)]
    start: Option<RawStart<'a>>,
    #[serde(default, borrow)]
    media: Option<RawMedia<'a>>,
    #[serde(default, borrow)]
    dtmf: Option<RawDtmf<'a>>,
    #[serde(default, borrow)]
    mark: Option<RawMark<'a>>,
    #[serde(default, borrow)]
    stop: Option<RawStop<'a>>,
}

#[derive(Deserialize)]
struct RawStart<'a> {
    #[serde(borrow, rename = "streamSid")]
    stream_sid: &'a str,
    #[serde(borrow, rename = "accountSid")]
    account_sid: &'a str,
    #[serde(borrow, rename = "callSid")]
    call_sid: &'a str,
    #[serde(default, borrow)]
    tracks: Vec<&'a str>,
    #[serde(default, borrow, rename = "customParameters")]
    custom_parameters: HashMap<&'a str, &'a str>,
    #[serde(borrow, rename = "mediaFormat")]
    media_format: RawMediaFormat<'a>,
}

#[derive(Deserialize)]
struct RawMediaFormat<'a> {
    #[serde(borrow)]
    encoding: &'a str,
    #[serde(rename = "sampleRate")]
    sample_rate: u32,
    channels: u32,
}

#[derive(Deserialize)]
struct RawMedia<'a> {
    #[serde(default, borrow)]
    track: Option<&'a str>,
    #[serde(default, borrow)]
    chunk: Option<&'a str>,
    #[serde(default, borrow)]
    timestamp: Option<&'a str>,
    #[serde(borrow)]
    payload: &'a str,
}

#[derive(Deserialize)]
struct RawDtmf<'a> {
    #[serde(borrow)]
    digit: &'a str,
}

#[derive(Deserialize)]
struct RawMark<'a> {
    #[serde(borrow)]
    name: &'a str,
}

#[derive(Deserialize)]
struct RawStop<'a> {
    #[serde(default, borrow, rename = "callSid")]
    call_sid: Option<&'a str>,
}

fn number(field: &'static str, value: Option<&str>) -> Result<u64, WireError> {
    match value {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| WireError::BadNumber {
            field,
            value: v.chars().take(32).collect(),
        }),
    }
}

fn missing(what: &str) -> WireError {
    WireError::Json(format!("missing `{what}`"))
}

/// Parse one inbound text frame. `max_len` bounds the frame size.
pub fn parse_inbound(frame: &str, max_len: usize) -> Result<InboundEvent<'_>, WireError> {
    if frame.len() > max_len {
        return Err(WireError::TooLarge {
            len: frame.len(),
            max: max_len,
        });
    }
    let raw: RawFrame<'_> = serde_json::from_str(frame).map_err(|e| WireError::Json(e.to_string()))?;
    let sid = raw.stream_sid.unwrap_or("");
    match raw.event {
        "connected" => Ok(InboundEvent::Connected {
            protocol: raw.protocol.unwrap_or(""),
            version: raw.version.unwrap_or(""),
        }),
        "start" => {
            let s = raw.start.ok_or_else(|| missing("start"))?;
            Ok(InboundEvent::Start(Start {
                stream_sid: s.stream_sid,
                account_sid: s.account_sid,
                call_sid: s.call_sid,
                tracks: s.tracks,
                custom_parameters: s.custom_parameters,
                encoding: s.media_format.encoding,
                sample_rate: s.media_format.sample_rate,
                channels: s.media_format.channels,
            }))
        }
        "media" => {
            let m = raw.media.ok_or_else(|| missing("media"))?;
            Ok(InboundEvent::Media(Media {
                stream_sid: sid,
                track: m.track.unwrap_or("inbound"),
                chunk: number("media.chunk", m.chunk)?,
                timestamp_ms: number("media.timestamp", m.timestamp)?,
                payload_b64: m.payload,
            }))
        }
        "dtmf" => Ok(InboundEvent::Dtmf {
            stream_sid: sid,
            digit: raw.dtmf.ok_or_else(|| missing("dtmf"))?.digit,
        }),
        "mark" => Ok(InboundEvent::Mark {
            stream_sid: sid,
            name: raw.mark.ok_or_else(|| missing("mark"))?.name,
        }),
        "stop" => Ok(InboundEvent::Stop {
            stream_sid: sid,
            call_sid: raw.stop.and_then(|s| s.call_sid).unwrap_or(""),
        }),
        other => Err(WireError::UnknownEvent(other.chars().take(32).collect())),
    }
}

/// Writes outbound messages into a reused buffer (no allocation once the
/// buffer has grown to a frame's size).
#[derive(Debug, Default)]
pub struct OutboundWriter {
    buf: String,
}

impl OutboundWriter {
    pub fn with_capacity(cap: usize) -> Self {
        Self {
            buf: String::with_capacity(cap),
        }
    }

    /// `{"event":"media","streamSid":S,"media":{"payload":B64}}` for μ-law bytes.
    pub fn media(&mut self, stream_sid: &str, ulaw: &[u8]) -> &str {
        self.buf.clear();
        self.buf.push_str(r#"{"event":"media","streamSid":""#);
        push_json_str(&mut self.buf, stream_sid);
        self.buf.push_str(r#"","media":{"payload":""#);
        B64.encode_string(ulaw, &mut self.buf);
        self.buf.push_str(r#""}}"#);
        &self.buf
    }

    /// `{"event":"mark","streamSid":S,"mark":{"name":N}}`.
    pub fn mark(&mut self, stream_sid: &str, name: &str) -> &str {
        self.buf.clear();
        self.buf.push_str(r#"{"event":"mark","streamSid":""#);
        push_json_str(&mut self.buf, stream_sid);
        self.buf.push_str(r#"","mark":{"name":""#);
        push_json_str(&mut self.buf, name);
        self.buf.push_str(r#""}}"#);
        &self.buf
    }

    /// `{"event":"clear","streamSid":S}`.
    pub fn clear(&mut self, stream_sid: &str) -> &str {
        self.buf.clear();
        self.buf.push_str(r#"{"event":"clear","streamSid":""#);
        push_json_str(&mut self.buf, stream_sid);
        self.buf.push_str(r#""}"#);
        &self.buf
    }
}

/// Append `s` JSON-escaped (without quotes).
fn push_json_str(buf: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => buf.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "MZ0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_the_documented_stream() {
        let start = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ0123456789abcdef0123456789abcdef",
 "start":{"streamSid":"MZ0123456789abcdef0123456789abcdef","accountSid":"AC00000000000000000000000000000000",
          "callSid":"CA11111111111111111111111111111111","tracks":["inbound"],
          "customParameters":{"tenant":"t_42","callerE164":"+15551230000"},
          "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
        match parse_inbound(start, 4096).unwrap() {
            InboundEvent::Start(s) => {
                assert_eq!(s.stream_sid, SID);
                assert_eq!(s.call_sid, "CA11111111111111111111111111111111");
                assert_eq!(s.custom_parameters.get("tenant"), Some(&"t_42"));
                assert_eq!((s.encoding, s.sample_rate, s.channels), ("audio/x-mulaw", 8000, 1));
            }
            other => panic!("{other:?}"),
        }
        let connected = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
        assert_eq!(
            parse_inbound(connected, 4096).unwrap(),
            InboundEvent::Connected {
                protocol: "Call",
                version: "1.0.0"
            }
        );
        let dtmf =
            r#"{"event":"dtmf","sequenceNumber":"57","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":"5"}}"#;
        assert_eq!(
            parse_inbound(dtmf, 4096).unwrap(),
            InboundEvent::Dtmf {
                stream_sid: "MZ1",
                digit: "5"
            }
        );
        let mark = r#"{"event":"mark","sequenceNumber":"90","streamSid":"MZ1","mark":{"name":"resp_7:3"}}"#;
        assert_eq!(
            parse_inbound(mark, 4096).unwrap(),
            InboundEvent::Mark {
                stream_sid: "MZ1",
                name: "resp_7:3"
            }
        );
        let stop =
            r#"{"event":"stop","sequenceNumber":"412","streamSid":"MZ1","stop":{"accountSid":"AC0","callSid":"CA1"}}"#;
        assert_eq!(
            parse_inbound(stop, 4096).unwrap(),
            InboundEvent::Stop {
                stream_sid: "MZ1",
                call_sid: "CA1"
            }
        );
    }

    #[test]
    fn media_round_trips_through_the_writer() {
        let ulaw: Vec<u8> = (0..160u32).map(|i| (i * 7 % 256) as u8).collect();
        let mut w = OutboundWriter::default();
        let out = w.media(SID, &ulaw).to_owned();
        // Twilio's inbound media has the same shape plus track/chunk/timestamp.
        let inbound = out.replace(
            r#""media":{"#,
            r#""media":{"track":"inbound","chunk":"3","timestamp":"60","#,
        );
        let InboundEvent::Media(m) = parse_inbound(&inbound, 4096).unwrap() else {
            panic!("not media")
        };
        assert_eq!((m.chunk, m.timestamp_ms, m.track), (3, 60, "inbound"));
        let mut buf = [0u8; 320];
        let n = m.decode_payload(&mut buf).unwrap();
        assert_eq!(&buf[..n], &ulaw[..]);
        assert_eq!(m.payload_b64.len(), 216, "160 bytes are 216 base64 characters");
    }

    #[test]
    fn silence_frame_matches_the_reference_base64() {
        let mut w = OutboundWriter::default();
        let out = w.media("S", &[0xFF; 160]);
        let expected = format!("{}/w==", "////".repeat(53));
        assert!(out.contains(&expected), "{out}");
    }

    #[test]
    fn writer_escapes_and_builds_valid_json() {
        let mut w = OutboundWriter::default();
        let mark: serde_json::Value = serde_json::from_str(w.mark(SID, "a\"b\\c\n")).unwrap();
        assert_eq!(mark["mark"]["name"], "a\"b\\c\n");
        let clear: serde_json::Value = serde_json::from_str(w.clear(SID)).unwrap();
        assert_eq!(clear, serde_json::json!({"event":"clear","streamSid":SID}));
    }

    #[test]
    fn bad_frames_are_typed_errors() {
        assert!(matches!(parse_inbound("{not json", 4096), Err(WireError::Json(_))));
        assert!(matches!(parse_inbound(r#"{"event":"bogus"}"#, 4096), Err(WireError::UnknownEvent(e)) if e == "bogus"));
        assert!(matches!(
            parse_inbound(r#"{"event":"media"}"#, 4096),
            Err(WireError::Json(_))
        ));
        let big = "x".repeat(5000);
        assert!(matches!(
            parse_inbound(&big, 4096),
            Err(WireError::TooLarge { len: 5000, max: 4096 })
        ));
        let bad_chunk = r#"{"event":"media","streamSid":"S","media":{"chunk":"x1","payload":""}}"#;
        assert!(matches!(
            parse_inbound(bad_chunk, 4096),
            Err(WireError::BadNumber {
                field: "media.chunk",
                ..
            })
        ));
        let garbage = r#"{"event":"media","streamSid":"S","media":{"payload":"!!!not base64!!!"}}"#;
        let InboundEvent::Media(m) = parse_inbound(garbage, 4096).unwrap() else {
            panic!()
        };
        assert_eq!(m.decode_payload(&mut [0u8; 160]), Err(WireError::Base64));
        let long = format!(
            r#"{{"event":"media","streamSid":"S","media":{{"payload":"{}"}}}}"#,
            "////".repeat(100)
        );
        let InboundEvent::Media(m) = parse_inbound(&long, 4096).unwrap() else {
            panic!()
        };
        assert!(matches!(
            m.decode_payload(&mut [0u8; 160]),
            Err(WireError::PayloadTooLarge { .. })
        ));
    }
}
