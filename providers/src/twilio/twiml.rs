//! A small TwiML writer for voice responses.
//!
//! Guarantees: every attribute value and text node is XML-escaped (`&`, `<`,
//! `>`, `"`, `'`), and characters XML 1.0 cannot represent (control
//! characters other than tab, newline and carriage return) are dropped, so no
//! input string can add elements or attributes to the document. The output is
//! always a complete document: `<?xml version="1.0" encoding="UTF-8"?>` then a
//! single `<Response>` root.

use std::fmt::Write as _;

use switchboard_domain::E164;

const PROLOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// A finished TwiML document, ready to serve as `text/xml` or to send as the
/// `Twiml` parameter of a call update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twiml(String);

impl Twiml {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for Twiml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Options for `<Say>`; `None` leaves the attribute out so Twilio's default applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SayOptions<'a> {
    pub voice: Option<&'a str>,
    pub language: Option<&'a str>,
}

/// Builds a `<Response>` verb by verb, in order.
#[derive(Debug, Clone, Default)]
pub struct VoiceResponse {
    body: String,
}

impl VoiceResponse {
    pub fn new() -> Self {
        Self::default()
    }

    /// `<Say>` speaks `text`.
    pub fn say(mut self, text: &str, opts: &SayOptions<'_>) -> Self {
        self.body.push_str("<Say");
        push_opt_attr(&mut self.body, "voice", opts.voice);
        push_opt_attr(&mut self.body, "language", opts.language);
        self.body.push('>');
        escape_into(&mut self.body, text);
        self.body.push_str("</Say>");
        self
    }

    /// `<Connect><Stream>`: a bidirectional Media Stream to `url` (wss), with
    /// custom parameters delivered in the stream's `start` message.
    pub fn connect_stream(mut self, url: &str, params: &[(&str, &str)]) -> Self {
        self.body.push_str("<Connect><Stream");
        push_attr(&mut self.body, "url", url);
        if params.is_empty() {
            self.body.push_str("/></Connect>");
            return self;
        }
        self.body.push('>');
        for (name, value) in params {
            self.body.push_str("<Parameter");
            push_attr(&mut self.body, "name", name);
            push_attr(&mut self.body, "value", value);
            self.body.push_str("/>");
        }
        self.body.push_str("</Stream></Connect>");
        self
    }

    /// `<Dial>` transfers the caller to `number`.
    pub fn dial(mut self, number: &E164) -> Self {
        self.body.push_str("<Dial>");
        escape_into(&mut self.body, number.as_str());
        self.body.push_str("</Dial>");
        self
    }

    /// `<Pause>` waits `secs` seconds.
    pub fn pause(mut self, secs: u32) -> Self {
        // Writing to a String cannot fail.
        let _ = write!(self.body, r#"<Pause length="{secs}"/>"#);
        self
    }

    /// `<Redirect>` continues with the TwiML at `url` (POST).
    pub fn redirect(mut self, url: &str) -> Self {
        self.body.push_str(r#"<Redirect method="POST">"#);
        escape_into(&mut self.body, url);
        self.body.push_str("</Redirect>");
        self
    }

    /// `<Hangup>` ends the call.
    pub fn hangup(mut self) -> Self {
        self.body.push_str("<Hangup/>");
        self
    }

    /// `<Reject>` refuses the call without answering it.
    pub fn reject(mut self, reason: RejectReason) -> Self {
        self.body.push_str("<Reject");
        push_attr(&mut self.body, "reason", reason.as_str());
        self.body.push_str("/>");
        self
    }

    pub fn build(self) -> Twiml {
        if self.body.is_empty() {
            return Twiml(format!("{PROLOG}<Response/>"));
        }
        Twiml(format!("{PROLOG}<Response>{}</Response>", self.body))
    }
}

/// What the caller hears when a call is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    Rejected,
    Busy,
}

impl RejectReason {
    fn as_str(self) -> &'static str {
        match self {
            RejectReason::Rejected => "rejected",
            RejectReason::Busy => "busy",
        }
    }
}

/// `<Response><Connect><Stream url=..>..` as one call, the common case.
pub fn connect_stream(url: &str, params: &[(&str, &str)]) -> Twiml {
    VoiceResponse::new().connect_stream(url, params).build()
}

/// `<Response><Say>..</Say></Response>`.
pub fn say(text: &str, opts: &SayOptions<'_>) -> Twiml {
    VoiceResponse::new().say(text, opts).build()
}

/// `<Response><Hangup/></Response>`.
pub fn hangup() -> Twiml {
    VoiceResponse::new().hangup().build()
}

/// `<Response><Dial>number</Dial></Response>`.
pub fn dial(number: &E164) -> Twiml {
    VoiceResponse::new().dial(number).build()
}

/// `<Response><Pause length=".."/></Response>`.
pub fn pause(secs: u32) -> Twiml {
    VoiceResponse::new().pause(secs).build()
}

fn push_opt_attr(out: &mut String, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        push_attr(out, name, v);
    }
}

fn push_attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_into(out, value);
    out.push('"');
}

/// Escapes for both text and double-quoted attribute contexts.
fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            // Not representable in XML 1.0, even as a character reference.
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deliberately tiny XML reader: enough to prove the writer's output has
    /// exactly the structure we intended and that values round-trip.
    #[derive(Debug, PartialEq)]
    enum Node {
        Element {
            name: String,
            attrs: Vec<(String, String)>,
            children: Vec<Node>,
        },
        Text(String),
    }

    fn el(name: &str, attrs: &[(&str, &str)], children: Vec<Node>) -> Node {
        Node::Element {
            name: name.into(),
            attrs: attrs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            children,
        }
    }

    fn text(s: &str) -> Node {
        Node::Text(s.into())
    }

    fn unescape(s: &str) -> String {
        assert!(!s.contains('<'), "raw '<' in {s:?}");
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            out.push_str(&rest[..i]);
            let end = rest[i..].find(';').expect("entity terminated") + i;
            out.push(match &rest[i + 1..end] {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                other => panic!("unknown entity {other}"),
            });
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn parse_doc(doc: &str) -> Node {
        let body = doc.strip_prefix(PROLOG).expect("prolog");
        let (node, rest) = parse_element(body);
        assert_eq!(rest, "", "trailing content");
        node
    }

    fn parse_element(s: &str) -> (Node, &str) {
        let s = s.strip_prefix('<').expect("element start");
        let name_end = s.find([' ', '>', '/']).expect("name end");
        let name = s[..name_end].to_owned();
        assert!(name.chars().all(|c| c.is_ascii_alphabetic()), "bad name {name:?}");
        let mut rest = &s[name_end..];
        let mut attrs = Vec::new();
        loop {
            if let Some(r) = rest.strip_prefix("/>") {
                return (
                    Node::Element {
                        name,
                        attrs,
                        children: vec![],
                    },
                    r,
                );
            }
            if let Some(r) = rest.strip_prefix('>') {
                rest = r;
                break;
            }
            let r = rest.strip_prefix(' ').expect("space before attribute");
            let eq = r.find("=\"").expect("attr =");
            let attr_name = r[..eq].to_owned();
            assert!(
                attr_name.chars().all(|c| c.is_ascii_alphabetic()),
                "bad attr {attr_name:?}"
            );
            let val_start = eq + 2;
            let val_end = r[val_start..].find('"').expect("attr close") + val_start;
            attrs.push((attr_name, unescape(&r[val_start..val_end])));
            rest = &r[val_end + 1..];
        }
        let mut children = Vec::new();
        loop {
            if let Some(r) = rest.strip_prefix("</") {
                let r = r.strip_prefix(name.as_str()).expect("matching close tag");
                let r = r.strip_prefix('>').expect("close >");
                return (Node::Element { name, attrs, children }, r);
            }
            if rest.starts_with('<') {
                let (child, r) = parse_element(rest);
                children.push(child);
                rest = r;
            } else {
                let end = rest.find('<').expect("text end");
                children.push(Node::Text(unescape(&rest[..end])));
                rest = &rest[end..];
            }
        }
    }

    const HOSTILE: &str = r#"a"/><Hangup/><Say x='1'>&amp; </Stream>]]><!--"#;

    #[test]
    fn connect_stream_exact_output() {
        let t = connect_stream(
            "wss://voice.example.net/twilio/media",
            &[("tenant", "t1"), ("agent", "a1")],
        );
        assert_eq!(
            t.as_str(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://voice.example.net/twilio/media"><Parameter name="tenant" value="t1"/><Parameter name="agent" value="a1"/></Stream></Connect></Response>"#
        );
        assert_eq!(
            connect_stream("wss://x/y", &[]).as_str(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://x/y"/></Connect></Response>"#
        );
    }

    #[test]
    fn simple_verbs_exact_output() {
        let n = E164::parse("+15551230000").expect("e164");
        let t = VoiceResponse::new()
            .say(
                "Hello",
                &SayOptions {
                    voice: Some("alice"),
                    language: Some("en-US"),
                },
            )
            .pause(2)
            .dial(&n)
            .redirect("/twilio/voice?retry=1&x=2")
            .hangup()
            .build();
        assert_eq!(
            t.as_str(),
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Response>"#,
                r#"<Say voice="alice" language="en-US">Hello</Say><Pause length="2"/><Dial>+15551230000</Dial>"#,
                r#"<Redirect method="POST">/twilio/voice?retry=1&amp;x=2</Redirect><Hangup/></Response>"#
            )
        );
        assert_eq!(
            hangup().as_str(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>"#
        );
        assert_eq!(
            say("Hi", &SayOptions::default()).as_str(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hi</Say></Response>"#
        );
        assert_eq!(
            pause(1).as_str(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Pause length="1"/></Response>"#
        );
        assert_eq!(
            dial(&n).as_str(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Dial>+15551230000</Dial></Response>"#
        );
        assert_eq!(
            VoiceResponse::new().build().as_str(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#
        );
        assert_eq!(
            VoiceResponse::new().reject(RejectReason::Busy).build().as_str(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Reject reason="busy"/></Response>"#
        );
    }

    #[test]
    fn every_special_character_is_escaped() {
        let t = say(r#"&<>"'"#, &SayOptions::default());
        assert!(t.as_str().contains("<Say>&amp;&lt;&gt;&quot;&apos;</Say>"), "{t}");
    }

    #[test]
    fn hostile_attribute_values_stay_inside_their_attribute() {
        let t = connect_stream(HOSTILE, &[(HOSTILE, HOSTILE), ("k", "v")]);
        let expected = el(
            "Response",
            &[],
            vec![el(
                "Connect",
                &[],
                vec![el(
                    "Stream",
                    &[("url", HOSTILE)],
                    vec![
                        el("Parameter", &[("name", HOSTILE), ("value", HOSTILE)], vec![]),
                        el("Parameter", &[("name", "k"), ("value", "v")], vec![]),
                    ],
                )],
            )],
        );
        assert_eq!(parse_doc(t.as_str()), expected);
    }

    #[test]
    fn hostile_text_stays_text() {
        let opts = SayOptions {
            voice: Some(HOSTILE),
            language: Some("en-US"),
        };
        let t = VoiceResponse::new().say(HOSTILE, &opts).redirect(HOSTILE).build();
        let expected = el(
            "Response",
            &[],
            vec![
                el("Say", &[("voice", HOSTILE), ("language", "en-US")], vec![text(HOSTILE)]),
                el("Redirect", &[("method", "POST")], vec![text(HOSTILE)]),
            ],
        );
        assert_eq!(parse_doc(t.as_str()), expected);
    }

    #[test]
    fn unrepresentable_control_characters_are_dropped() {
        let t = say("a\u{0}b\u{1b}c\td\ne", &SayOptions::default());
        assert!(t.as_str().contains("<Say>abc\td\ne</Say>"), "{t}");
    }
}
