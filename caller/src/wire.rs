//! Twilio's side of the Media Streams protocol (protocols.md §1.2–1.3): the
//! messages Twilio sends, and a reader for the ones the engine sends back.
//!
//! This is the mirror image of `switchboard_media::twilio` (which is the
//! engine's side): there, inbound frames are parsed and outbound ones written;
//! here we write what Twilio writes and parse what Twilio would receive.
//!
//! Guarantees: every message is valid JSON with the field names and string
//! typing Twilio uses (`sequenceNumber`, `chunk` and `timestamp` are strings;
//! `sampleRate`/`channels` numbers). Reading borrows from the frame unless a
//! JSON escape forces a copy, and unknown fields are ignored.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine as _;
use serde::Deserialize;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Capacity that fits a 160-byte `media` message with its envelope, so
/// building one never reallocates.
const MEDIA_CAPACITY: usize = 384;

/// Writes Twilio → engine messages. Each call returns a fresh `String`
/// because the WebSocket takes ownership of what it sends; it is allocated at
/// its final size once, so a media frame costs exactly one allocation.
#[derive(Debug, Clone)]
pub struct TwilioWriter {
    stream_sid: String,
    account_sid: String,
    call_sid: String,
}

impl TwilioWriter {
    pub fn new(stream_sid: &str, account_sid: &str, call_sid: &str) -> Self {
        Self {
            stream_sid: stream_sid.to_owned(),
            account_sid: account_sid.to_owned(),
            call_sid: call_sid.to_owned(),
        }
    }

    /// `{"event":"connected","protocol":"Call","version":"1.0.0"}` (no sequence number).
    pub fn connected(&self) -> String {
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.to_owned()
    }

    /// The `start` message; `parameters` become `customParameters`.
    pub fn start(&self, seq: u64, parameters: &[(String, String)]) -> String {
        let custom: serde_json::Map<String, serde_json::Value> = parameters
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::json!({
            "event": "start",
            "sequenceNumber": seq.to_string(),
            "streamSid": self.stream_sid,
            "start": {
                "streamSid": self.stream_sid,
                "accountSid": self.account_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "customParameters": custom,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        })
        .to_string()
    }

    /// An inbound `media` frame: `chunk` counts from 1, `timestamp_ms` is stream time.
    pub fn media(&self, seq: u64, chunk: u64, timestamp_ms: u64, ulaw: &[u8]) -> String {
        let mut buf = String::with_capacity(MEDIA_CAPACITY.max(ulaw.len() * 4 / 3 + 200));
        // Writing into a String cannot fail.
        let _ = write!(buf, r#"{{"event":"media","sequenceNumber":"{seq}","streamSid":""#);
        push_json_str(&mut buf, &self.stream_sid);
        let _ = write!(
            buf,
            r#"","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{timestamp_ms}","payload":""#
        );
        B64.encode_string(ulaw, &mut buf);
        buf.push_str(r#""}}"#);
        buf
    }

    /// A keypress; Twilio always says `inbound_track` here.
    pub fn dtmf(&self, seq: u64, digit: char) -> String {
        let mut buf = String::with_capacity(128);
        let _ = write!(buf, r#"{{"event":"dtmf","sequenceNumber":"{seq}","streamSid":""#);
        push_json_str(&mut buf, &self.stream_sid);
        buf.push_str(r#"","dtmf":{"track":"inbound_track","digit":""#);
        push_json_str(&mut buf, digit.encode_utf8(&mut [0; 4]));
        buf.push_str(r#""}}"#);
        buf
    }

    /// The echo of a mark whose audio has played (or was cleared).
    pub fn mark(&self, seq: u64, name: &str) -> String {
        let mut buf = String::with_capacity(96 + name.len());
        let _ = write!(buf, r#"{{"event":"mark","sequenceNumber":"{seq}","streamSid":""#);
        push_json_str(&mut buf, &self.stream_sid);
        buf.push_str(r#"","mark":{"name":""#);
        push_json_str(&mut buf, name);
        buf.push_str(r#""}}"#);
        buf
    }

    /// The last message: the caller hung up.
    pub fn stop(&self, seq: u64) -> String {
        serde_json::json!({
            "event": "stop",
            "sequenceNumber": seq.to_string(),
            "streamSid": self.stream_sid,
            "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
        })
        .to_string()
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

/// One message from the engine, as Twilio reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineMsg<'a> {
    /// Audio to queue for playback; `payload` is still base64.
    Media {
        stream_sid: Cow<'a, str>,
        payload: Cow<'a, str>,
    },
    /// Echo `name` once everything queued before it has played.
    Mark {
        stream_sid: Cow<'a, str>,
        name: Cow<'a, str>,
    },
    /// Drop all queued audio and echo the pending marks.
    Clear { stream_sid: Cow<'a, str> },
}

impl EngineMsg<'_> {
    pub fn stream_sid(&self) -> &str {
        match self {
            EngineMsg::Media { stream_sid, .. }
            | EngineMsg::Mark { stream_sid, .. }
            | EngineMsg::Clear { stream_sid } => stream_sid,
        }
    }
}

#[derive(Deserialize)]
struct RawMsg<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(default, borrow, rename = "streamSid")]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    media: Option<RawPayload<'a>>,
    #[serde(default, borrow)]
    mark: Option<RawName<'a>>,
}

#[derive(Deserialize)]
struct RawPayload<'a> {
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RawName<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// Parses one text frame from the engine. Twilio answers a malformed message
/// with error 31951; we report it as `Err` with the reason.
pub fn parse_engine_msg(frame: &str) -> Result<EngineMsg<'_>, String> {
    let raw: RawMsg<'_> = serde_json::from_str(frame).map_err(|e| format!("malformed JSON: {e}"))?;
    let stream_sid = raw.stream_sid.ok_or("missing streamSid")?;
    match raw.event.as_ref() {
        "media" => Ok(EngineMsg::Media {
            stream_sid,
            payload: raw.media.ok_or("media without `media.payload`")?.payload,
        }),
        "mark" => Ok(EngineMsg::Mark {
            stream_sid,
            name: raw.mark.ok_or("mark without `mark.name`")?.name,
        }),
        "clear" => Ok(EngineMsg::Clear { stream_sid }),
        other => Err(format!("unknown event `{}`", crate::error::truncate(other))),
    }
}

/// Decodes a base64 μ-law payload into `out` (cleared first, capacity reused).
pub fn decode_payload(payload: &str, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    B64.decode_vec(payload.as_bytes(), out)
        .map_err(|e| format!("media payload is not base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_media::twilio::{InboundEvent, OutboundWriter, parse_inbound};

    const SID: &str = "MZ0123456789abcdef0123456789abcdef";

    #[test]
    fn the_engine_parser_reads_everything_we_write() {
        let w = TwilioWriter::new(SID, "AC1", "CA1");
        let params = vec![("call_id".to_owned(), "0190abc".to_owned())];
        match parse_inbound(&w.start(1, &params), 4096).unwrap() {
            InboundEvent::Start(s) => {
                assert_eq!((s.stream_sid, s.account_sid, s.call_sid), (SID, "AC1", "CA1"));
                assert_eq!(s.tracks, vec!["inbound"]);
                assert_eq!(s.custom_parameters.get("call_id"), Some(&"0190abc"));
                assert_eq!((s.encoding, s.sample_rate, s.channels), ("audio/x-mulaw", 8000, 1));
            }
            other => panic!("{other:?}"),
        }
        let ulaw: Vec<u8> = (0..160u32).map(|i| (i * 13 % 256) as u8).collect();
        let media = w.media(7, 6, 100, &ulaw);
        assert!(media.len() <= MEDIA_CAPACITY, "one allocation: {}", media.len());
        let InboundEvent::Media(m) = parse_inbound(&media, 4096).unwrap() else {
            panic!("not media")
        };
        assert_eq!(
            (m.stream_sid, m.track, m.chunk, m.timestamp_ms),
            (SID, "inbound", 6, 100)
        );
        let mut buf = [0u8; 160];
        assert_eq!(m.decode_payload(&mut buf).unwrap(), 160);
        assert_eq!(&buf[..], &ulaw[..]);
        let json: serde_json::Value = serde_json::from_str(&media).unwrap();
        assert_eq!(json["sequenceNumber"], "7");
        assert_eq!(
            parse_inbound(&w.dtmf(8, '#'), 4096).unwrap(),
            InboundEvent::Dtmf {
                stream_sid: SID,
                digit: "#"
            }
        );
        assert_eq!(
            parse_inbound(&w.mark(9, "r1:2"), 4096).unwrap(),
            InboundEvent::Mark {
                stream_sid: SID,
                name: "r1:2"
            }
        );
        assert_eq!(
            parse_inbound(&w.stop(10), 4096).unwrap(),
            InboundEvent::Stop {
                stream_sid: SID,
                call_sid: "CA1"
            }
        );
        assert_eq!(
            parse_inbound(&w.connected(), 4096).unwrap(),
            InboundEvent::Connected {
                protocol: "Call",
                version: "1.0.0"
            }
        );
    }

    #[test]
    fn values_needing_json_escapes_stay_valid_json() {
        // (The engine's parser borrows strings, so it cannot take escaped values;
        // checked here with a general JSON reader instead.)
        let w = TwilioWriter::new(SID, "AC1", "CA1");
        let odd = "a\"b\\c\n";
        let start: serde_json::Value = serde_json::from_str(&w.start(1, &[("k".to_owned(), odd.to_owned())])).unwrap();
        assert_eq!(start["start"]["customParameters"]["k"], odd);
        let mark: serde_json::Value = serde_json::from_str(&w.mark(2, odd)).unwrap();
        assert_eq!(mark["mark"]["name"], odd);
        assert_eq!(mark["sequenceNumber"], "2");
    }

    #[test]
    fn reads_what_the_engine_writer_writes() {
        let mut out = OutboundWriter::default();
        let ulaw = [0x12u8; 160];
        match parse_engine_msg(out.media(SID, &ulaw)).unwrap() {
            EngineMsg::Media { stream_sid, payload } => {
                assert_eq!(stream_sid, SID);
                let mut bytes = Vec::new();
                decode_payload(&payload, &mut bytes).unwrap();
                assert_eq!(bytes, ulaw);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_engine_msg(out.mark(SID, "a\\b")).unwrap(),
            EngineMsg::Mark {
                stream_sid: SID.into(),
                name: "a\\b".into()
            }
        );
        assert_eq!(
            parse_engine_msg(out.clear(SID)).unwrap(),
            EngineMsg::Clear { stream_sid: SID.into() }
        );
        // JSON escapes (e.g. `\/` from some encoders) are decoded, not rejected.
        let escaped = r#"{"event":"media","streamSid":"S","media":{"payload":"\/\/8="}}"#;
        let EngineMsg::Media { payload, .. } = parse_engine_msg(escaped).unwrap() else {
            panic!()
        };
        assert_eq!(payload, "//8=");
    }

    #[test]
    fn malformed_engine_messages_are_errors() {
        for bad in [
            "nope",
            r#"{"event":"media","streamSid":"S"}"#,
            r#"{"event":"media","media":{"payload":""}}"#,
            r#"{"event":"mark","streamSid":"S","mark":{}}"#,
            r#"{"event":"playload","streamSid":"S"}"#,
        ] {
            assert!(parse_engine_msg(bad).is_err(), "{bad}");
        }
        assert!(decode_payload("!!", &mut Vec::new()).is_err());
    }
}
