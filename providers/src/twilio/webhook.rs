//! Typed Twilio voice webhooks: the incoming-call request, call status
//! callbacks and recording status callbacks.
//!
//! Guarantees: a parsed value has every required field present and valid
//! (`CallSid` non-empty, `AccountSid` starting with `AC`, a known
//! `CallStatus`, ...); a failure names the offending form field. Unknown
//! fields are ignored so Twilio can add parameters without breaking us. When a
//! field repeats, the first occurrence wins.

use std::str::FromStr;

use switchboard_domain::{CallDirection, CallStatus, E164, ProviderCallId};

/// Why a webhook form could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing form field `{0}`")]
    Missing(&'static str),
    #[error("invalid form field `{field}` = `{value}`: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
}

/// A Twilio account SID (`AC...`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountSid(String);

impl AccountSid {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.len() > 2 && value.starts_with("AC") && value.chars().all(|c| c.is_ascii_alphanumeric()) {
            Ok(Self(value.to_owned()))
        } else {
            Err("expected `AC` followed by letters and digits".to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Twilio recording SID (`RE...`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordingSid(String);

impl RecordingSid {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One end of a call: a phone number, or a non-PSTN address such as
/// `client:alice` or a SIP URI, or an anonymous caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    Phone(E164),
    Other(String),
}

impl Party {
    fn parse(value: &str) -> Self {
        match E164::parse(value) {
            Ok(n) if value.starts_with('+') => Party::Phone(n),
            _ => Party::Other(value.to_owned()),
        }
    }

    /// The phone number, when this party is on the phone network.
    pub fn e164(&self) -> Option<&E164> {
        match self {
            Party::Phone(n) => Some(n),
            Party::Other(_) => None,
        }
    }
}

/// The request Twilio makes to the number's Voice URL when a call arrives (or
/// when an outbound call connects and fetches its TwiML).
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceWebhook {
    pub call_sid: ProviderCallId,
    pub account_sid: AccountSid,
    pub from: Party,
    pub to: Party,
    pub call_status: CallStatus,
    pub direction: CallDirection,
    pub api_version: Option<String>,
    pub forwarded_from: Option<String>,
    pub caller_name: Option<String>,
    pub parent_call_sid: Option<ProviderCallId>,
    /// Set after `<Gather>`.
    pub digits: Option<String>,
    /// Set after `<Gather input="speech">`.
    pub speech_result: Option<String>,
    pub confidence: Option<f32>,
    /// Answering-machine detection result, when requested.
    pub answered_by: Option<String>,
}

/// A call progress event sent to the call's `StatusCallback`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusCallback {
    pub call_sid: ProviderCallId,
    pub account_sid: AccountSid,
    pub call_status: CallStatus,
    /// Order of this callback among the call's callbacks; they can arrive out of order.
    pub sequence_number: Option<u64>,
    /// Call length in seconds, present on completion.
    pub call_duration: Option<u64>,
    pub from: Option<Party>,
    pub to: Option<Party>,
    pub direction: Option<CallDirection>,
    pub timestamp: Option<String>,
    pub callback_source: Option<String>,
    pub recording_url: Option<String>,
    pub recording_sid: Option<RecordingSid>,
    pub recording_duration: Option<u64>,
    pub answered_by: Option<String>,
}

/// `RecordingStatus` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingStatus {
    InProgress,
    Completed,
    /// Too short or silent; no file exists.
    Absent,
    Failed,
}

impl FromStr for RecordingStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "in-progress" => Ok(Self::InProgress),
            "completed" => Ok(Self::Completed),
            "absent" => Ok(Self::Absent),
            "failed" => Ok(Self::Failed),
            _ => Err("expected in-progress, completed, absent or failed".to_owned()),
        }
    }
}

/// The request sent to `RecordingStatusCallback`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingStatusCallback {
    pub account_sid: AccountSid,
    pub call_sid: ProviderCallId,
    pub recording_sid: RecordingSid,
    pub recording_url: String,
    pub recording_status: RecordingStatus,
    /// Seconds; absent while in progress.
    pub recording_duration: Option<u64>,
    pub recording_channels: Option<u8>,
    pub recording_start_time: Option<String>,
    pub recording_source: Option<String>,
    pub recording_track: Option<String>,
    pub error_code: Option<u32>,
}

/// Read-only view of form pairs with field-naming errors.
struct Form<'a>(&'a [(String, String)]);

impl<'a> Form<'a> {
    fn optional(&self, field: &'static str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, field: &'static str) -> Result<&'a str, WebhookError> {
        self.optional(field).ok_or(WebhookError::Missing(field))
    }

    fn parse_opt<T>(
        &self,
        field: &'static str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, WebhookError> {
        self.optional(field)
            .map(|v| f(v).map_err(|reason| invalid(field, v, reason)))
            .transpose()
    }

    fn parse_req<T>(&self, field: &'static str, f: impl FnOnce(&str) -> Result<T, String>) -> Result<T, WebhookError> {
        let v = self.required(field)?;
        f(v).map_err(|reason| invalid(field, v, reason))
    }

    fn string(&self, field: &'static str) -> Option<String> {
        self.optional(field).map(str::to_owned)
    }
}

fn invalid(field: &'static str, value: &str, reason: String) -> WebhookError {
    // Bound what we echo back: the value came from the network.
    WebhookError::Invalid {
        field,
        value: value.chars().take(64).collect(),
        reason,
    }
}

fn call_status(value: &str) -> Result<CallStatus, String> {
    match value {
        // Twilio reports `initiated` for the first outbound event; the engine models it as queued.
        "initiated" => Ok(CallStatus::Queued),
        other => other.parse::<CallStatus>().map_err(|e| e.to_string()),
    }
}

fn direction(value: &str) -> Result<CallDirection, String> {
    // `outbound-api` (REST-created) and `outbound-dial` (<Dial> leg) are both outbound to us.
    if value == "inbound" {
        Ok(CallDirection::Inbound)
    } else if value.starts_with("outbound") {
        Ok(CallDirection::Outbound)
    } else {
        Err("expected inbound or outbound-*".to_owned())
    }
}

fn number<T: FromStr>(value: &str) -> Result<T, String> {
    value
        .parse::<T>()
        .map_err(|_| "expected a non-negative integer".to_owned())
}

fn call_sid(value: &str) -> Result<ProviderCallId, String> {
    Ok(ProviderCallId::new(value))
}

impl VoiceWebhook {
    pub fn from_form(pairs: &[(String, String)]) -> Result<Self, WebhookError> {
        let f = Form(pairs);
        Ok(Self {
            call_sid: f.parse_req("CallSid", call_sid)?,
            account_sid: f.parse_req("AccountSid", AccountSid::parse)?,
            from: Party::parse(f.required("From")?),
            to: Party::parse(f.required("To")?),
            call_status: f.parse_req("CallStatus", call_status)?,
            direction: f.parse_req("Direction", direction)?,
            api_version: f.string("ApiVersion"),
            forwarded_from: f.string("ForwardedFrom"),
            caller_name: f.string("CallerName"),
            parent_call_sid: f.parse_opt("ParentCallSid", call_sid)?,
            digits: f.string("Digits"),
            speech_result: f.string("SpeechResult"),
            confidence: f.parse_opt("Confidence", |v| {
                v.parse::<f32>()
                    .ok()
                    .filter(|c| c.is_finite())
                    .ok_or_else(|| "expected a number".to_owned())
            })?,
            answered_by: f.string("AnsweredBy"),
        })
    }
}

impl StatusCallback {
    pub fn from_form(pairs: &[(String, String)]) -> Result<Self, WebhookError> {
        let f = Form(pairs);
        Ok(Self {
            call_sid: f.parse_req("CallSid", call_sid)?,
            account_sid: f.parse_req("AccountSid", AccountSid::parse)?,
            call_status: f.parse_req("CallStatus", call_status)?,
            sequence_number: f.parse_opt("SequenceNumber", number)?,
            call_duration: f.parse_opt("CallDuration", number)?,
            from: f.optional("From").map(Party::parse),
            to: f.optional("To").map(Party::parse),
            direction: f.parse_opt("Direction", direction)?,
            timestamp: f.string("Timestamp"),
            callback_source: f.string("CallbackSource"),
            recording_url: f.string("RecordingUrl"),
            recording_sid: f.optional("RecordingSid").map(|v| RecordingSid(v.to_owned())),
            recording_duration: f.parse_opt("RecordingDuration", number)?,
            answered_by: f.string("AnsweredBy"),
        })
    }
}

impl RecordingStatusCallback {
    pub fn from_form(pairs: &[(String, String)]) -> Result<Self, WebhookError> {
        let f = Form(pairs);
        Ok(Self {
            account_sid: f.parse_req("AccountSid", AccountSid::parse)?,
            call_sid: f.parse_req("CallSid", call_sid)?,
            recording_sid: RecordingSid(f.required("RecordingSid")?.to_owned()),
            recording_url: f.required("RecordingUrl")?.to_owned(),
            recording_status: f.parse_req("RecordingStatus", |v| v.parse())?,
            recording_duration: f.parse_opt("RecordingDuration", number)?,
            recording_channels: f.parse_opt("RecordingChannels", number)?,
            recording_start_time: f.string("RecordingStartTime"),
            recording_source: f.string("RecordingSource"),
            recording_track: f.string("RecordingTrack"),
            error_code: f.parse_opt("ErrorCode", number)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn voice_form() -> Vec<(String, String)> {
        form(&[
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", "CA11111111111111111111111111111111"),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
            ("From", "+15551230000"),
            ("To", "+15559870000"),
            ("FromCity", "SPRINGFIELD"),
            ("SomethingNew", "ignored"),
        ])
    }

    fn without(mut pairs: Vec<(String, String)>, field: &str) -> Vec<(String, String)> {
        pairs.retain(|(k, _)| k != field);
        pairs
    }

    fn with(mut pairs: Vec<(String, String)>, field: &str, value: &str) -> Vec<(String, String)> {
        pairs.retain(|(k, _)| k != field);
        pairs.push((field.to_owned(), value.to_owned()));
        pairs
    }

    #[test]
    fn parses_incoming_call() {
        let w = VoiceWebhook::from_form(&voice_form()).expect("valid");
        assert_eq!(w.call_sid.as_str(), "CA11111111111111111111111111111111");
        assert_eq!(w.account_sid.as_str(), "AC00000000000000000000000000000000");
        assert_eq!(w.from, Party::Phone(E164::parse("+15551230000").expect("e164")));
        assert_eq!(w.to.e164().map(E164::as_str), Some("+15559870000"));
        assert_eq!(w.call_status, CallStatus::Ringing);
        assert_eq!(w.direction, CallDirection::Inbound);
        assert_eq!(w.api_version.as_deref(), Some("2010-04-01"));
        assert_eq!(w.digits, None);
        assert_eq!(w.confidence, None);
    }

    #[test]
    fn non_phone_parties_are_kept_verbatim() {
        let w = VoiceWebhook::from_form(&with(voice_form(), "From", "client:alice")).expect("valid");
        assert_eq!(w.from, Party::Other("client:alice".into()));
        assert_eq!(w.from.e164(), None);
    }

    #[test]
    fn outbound_directions_map_to_outbound() {
        for d in ["outbound-api", "outbound-dial"] {
            let w = VoiceWebhook::from_form(&with(voice_form(), "Direction", d)).expect("valid");
            assert_eq!(w.direction, CallDirection::Outbound);
        }
    }

    #[test]
    fn gather_results_are_parsed() {
        let pairs = with(
            with(with(voice_form(), "Digits", "12#"), "SpeechResult", "sales"),
            "Confidence",
            "0.9",
        );
        let w = VoiceWebhook::from_form(&pairs).expect("valid");
        assert_eq!(w.digits.as_deref(), Some("12#"));
        assert_eq!(w.speech_result.as_deref(), Some("sales"));
        assert_eq!(w.confidence, Some(0.9));
    }

    #[test]
    fn missing_required_fields_are_named() {
        for field in ["CallSid", "AccountSid", "From", "To", "CallStatus", "Direction"] {
            let err = VoiceWebhook::from_form(&without(voice_form(), field)).expect_err(field);
            assert_eq!(err, WebhookError::Missing(field));
        }
        // An empty value counts as missing.
        let err = VoiceWebhook::from_form(&with(voice_form(), "CallSid", "")).expect_err("empty");
        assert_eq!(err, WebhookError::Missing("CallSid"));
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("CallStatus", "exploded"),
            ("Direction", "sideways"),
            ("AccountSid", "XX123"),
            ("Confidence", "high"),
        ];
        for (field, value) in cases {
            match VoiceWebhook::from_form(&with(voice_form(), field, value)) {
                Err(WebhookError::Invalid { field: f, value: v, .. }) => {
                    assert_eq!((f, v.as_str()), (field, value));
                }
                other => panic!("{field}: expected Invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn echoed_values_are_bounded() {
        let long = "x".repeat(10_000);
        match VoiceWebhook::from_form(&with(voice_form(), "CallStatus", &long)) {
            Err(WebhookError::Invalid { value, .. }) => assert_eq!(value.len(), 64),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn first_occurrence_wins() {
        let mut pairs = voice_form();
        pairs.push(("CallStatus".into(), "completed".into()));
        assert_eq!(
            VoiceWebhook::from_form(&pairs).expect("valid").call_status,
            CallStatus::Ringing
        );
    }

    fn status_form() -> Vec<(String, String)> {
        form(&[
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("CallSid", "CA11111111111111111111111111111111"),
            ("CallStatus", "completed"),
            ("SequenceNumber", "3"),
            ("CallDuration", "42"),
            ("CallbackSource", "call-progress-events"),
            ("Timestamp", "Tue, 24 Nov 2026 16:32:00 +0000"),
            ("RecordingUrl", "https://api.twilio.com/rec/RE1"),
            ("RecordingSid", "RE1"),
            ("RecordingDuration", "40"),
            ("Direction", "outbound-api"),
        ])
    }

    #[test]
    fn parses_status_callback() {
        let s = StatusCallback::from_form(&status_form()).expect("valid");
        assert_eq!(s.call_sid.as_str(), "CA11111111111111111111111111111111");
        assert_eq!(s.call_status, CallStatus::Completed);
        assert_eq!(s.sequence_number, Some(3));
        assert_eq!(s.call_duration, Some(42));
        assert_eq!(s.recording_sid.as_ref().map(RecordingSid::as_str), Some("RE1"));
        assert_eq!(s.recording_url.as_deref(), Some("https://api.twilio.com/rec/RE1"));
        assert_eq!(s.recording_duration, Some(40));
        assert_eq!(s.direction, Some(CallDirection::Outbound));
        assert_eq!(s.from, None);
    }

    #[test]
    fn status_callback_optional_fields_may_be_absent() {
        let pairs = form(&[
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("CallSid", "CA1"),
            ("CallStatus", "initiated"),
        ]);
        let s = StatusCallback::from_form(&pairs).expect("valid");
        assert_eq!(s.call_status, CallStatus::Queued);
        assert_eq!(s.sequence_number, None);
        assert_eq!(s.call_duration, None);
    }

    #[test]
    fn status_callback_rejects_bad_numbers() {
        for field in ["SequenceNumber", "CallDuration", "RecordingDuration"] {
            match StatusCallback::from_form(&with(status_form(), field, "-1")) {
                Err(WebhookError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected Invalid, got {other:?}"),
            }
        }
    }

    fn recording_form() -> Vec<(String, String)> {
        form(&[
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("CallSid", "CA1"),
            ("RecordingSid", "RE1"),
            ("RecordingUrl", "https://api.twilio.com/rec/RE1"),
            ("RecordingStatus", "completed"),
            ("RecordingDuration", "12"),
            ("RecordingChannels", "2"),
            ("RecordingSource", "RecordVerb"),
            ("RecordingTrack", "both"),
            ("RecordingStartTime", "Tue, 24 Nov 2026 16:32:00 +0000"),
        ])
    }

    #[test]
    fn parses_recording_status_callback() {
        let r = RecordingStatusCallback::from_form(&recording_form()).expect("valid");
        assert_eq!(r.recording_status, RecordingStatus::Completed);
        assert_eq!(r.recording_sid.as_str(), "RE1");
        assert_eq!(r.recording_duration, Some(12));
        assert_eq!(r.recording_channels, Some(2));
        assert_eq!(r.recording_source.as_deref(), Some("RecordVerb"));
        assert_eq!(r.error_code, None);
        let absent = with(
            with(recording_form(), "RecordingStatus", "absent"),
            "ErrorCode",
            "16101",
        );
        let r = RecordingStatusCallback::from_form(&absent).expect("valid");
        assert_eq!(r.recording_status, RecordingStatus::Absent);
        assert_eq!(r.error_code, Some(16101));
    }

    #[test]
    fn recording_callback_errors_name_the_field() {
        assert_eq!(
            RecordingStatusCallback::from_form(&without(recording_form(), "RecordingUrl")),
            Err(WebhookError::Missing("RecordingUrl"))
        );
        match RecordingStatusCallback::from_form(&with(recording_form(), "RecordingStatus", "lost")) {
            Err(WebhookError::Invalid { field, .. }) => assert_eq!(field, "RecordingStatus"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}
