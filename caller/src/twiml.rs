//! Reading the voice webhook's TwiML answer, as Twilio would.
//!
//! A deliberately small XML reader: elements, attributes (single or double
//! quoted), text, comments, CDATA, the prolog and the five predefined entities
//! plus numeric character references. It is enough for TwiML, which has no
//! namespaces or DTDs, and it never panics on malformed input: anything it
//! cannot read is a [`CallerError::Twiml`].
//!
//! Guarantees: a `<Connect><Stream url=..>` answer yields the URL and every
//! `<Parameter name value>` in document order, unescaped; an answer without a
//! bidirectional stream but with `<Say>`, `<Hangup/>` or `<Reject/>` is a
//! refusal ([`CallerError::Rejected`]) carrying the spoken text.

use crate::error::{CallerError, truncate};

/// What the engine told Twilio to do with the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAnswer {
    /// The `url` attribute of `<Stream>`, exactly as written (unescaped).
    pub url: String,
    /// `<Parameter name value>` pairs in document order; delivered in `start.customParameters`.
    pub parameters: Vec<(String, String)>,
}

impl StreamAnswer {
    /// The value of the first parameter called `name`.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Parses a webhook answer. `Ok` only for a bidirectional `<Connect><Stream>`.
pub fn parse_answer(xml: &str) -> Result<StreamAnswer, CallerError> {
    let nodes = tokenize(xml).map_err(|e| CallerError::Twiml(format!("{e} in {}", truncate(xml))))?;
    let mut stack: Vec<&str> = Vec::new();
    let mut stream: Option<StreamAnswer> = None;
    let mut said: Vec<String> = Vec::new();
    let mut refused = false;
    let mut saw_root = false;
    for node in nodes {
        match node {
            Node::Open { name, attrs, empty } => {
                if stack.is_empty() {
                    if name != "Response" {
                        return Err(CallerError::Twiml(format!("root element is <{name}>, not <Response>")));
                    }
                    saw_root = true;
                }
                let parent = stack.last().copied();
                match (parent, name) {
                    (Some("Connect"), "Stream") => {
                        let url = attr(&attrs, "url")
                            .ok_or_else(|| CallerError::Twiml("<Stream> without a url".to_owned()))?;
                        if stream.is_some() {
                            return Err(CallerError::Twiml("more than one <Connect><Stream>".to_owned()));
                        }
                        stream = Some(StreamAnswer {
                            url: url.to_owned(),
                            parameters: Vec::new(),
                        });
                    }
                    (Some("Stream"), "Parameter") if stack.len() >= 2 && stack[stack.len() - 2] == "Connect" => {
                        let (Some(n), Some(v)) = (attr(&attrs, "name"), attr(&attrs, "value")) else {
                            return Err(CallerError::Twiml("<Parameter> needs name and value".to_owned()));
                        };
                        if let Some(s) = stream.as_mut() {
                            s.parameters.push((n.to_owned(), v.to_owned()));
                        }
                    }
                    (_, "Hangup" | "Reject") => refused = true,
                    _ => {}
                }
                if !empty {
                    stack.push(name);
                }
            }
            Node::Close(name) => match stack.pop() {
                Some(open) if open == name => {}
                Some(open) => {
                    return Err(CallerError::Twiml(format!("</{name}> closes <{open}>")));
                }
                None => return Err(CallerError::Twiml(format!("stray </{name}>"))),
            },
            Node::Text(text) => {
                if stack.last() == Some(&"Say") {
                    said.push(text.trim().to_owned());
                }
            }
        }
    }
    if !stack.is_empty() {
        return Err(CallerError::Twiml(format!("<{}> is never closed", stack.join("><"))));
    }
    if !saw_root {
        return Err(CallerError::Twiml(format!("no <Response> in {}", truncate(xml))));
    }
    if let Some(stream) = stream {
        return Ok(stream);
    }
    if refused || !said.is_empty() {
        return Err(CallerError::Rejected { said: said.join(" ") });
    }
    Err(CallerError::Twiml(format!(
        "no <Connect><Stream> to hold the call on: {}",
        truncate(xml)
    )))
}

fn attr<'a>(attrs: &'a [(&str, String)], name: &str) -> Option<&'a str> {
    attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

#[derive(Debug, PartialEq)]
enum Node<'a> {
    Open {
        name: &'a str,
        attrs: Vec<(&'a str, String)>,
        /// `<X/>`: no matching close follows.
        empty: bool,
    },
    Close(&'a str),
    Text(String),
}

fn tokenize(xml: &str) -> Result<Vec<Node<'_>>, String> {
    let mut nodes = Vec::new();
    let mut rest = xml.trim_start_matches('\u{feff}');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<?") {
            rest = skip_past(after, "?>")?;
        } else if let Some(after) = rest.strip_prefix("<!--") {
            rest = skip_past(after, "-->")?;
        } else if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").ok_or("unterminated CDATA")?;
            nodes.push(Node::Text(after[..end].to_owned()));
            rest = &after[end + 3..];
        } else if let Some(after) = rest.strip_prefix("<!") {
            rest = skip_past(after, ">")?;
        } else if let Some(after) = rest.strip_prefix("</") {
            let end = after.find('>').ok_or("unterminated end tag")?;
            let name = after[..end].trim();
            if !is_name(name) {
                return Err(format!("bad end tag </{name}>"));
            }
            nodes.push(Node::Close(name));
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('<') {
            let (node, after) = open_tag(after)?;
            nodes.push(node);
            rest = after;
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            let text = &rest[..end];
            if !text.trim().is_empty() {
                nodes.push(Node::Text(unescape(text)?));
            }
            rest = &rest[end..];
        }
    }
    Ok(nodes)
}

fn skip_past<'a>(s: &'a str, end: &str) -> Result<&'a str, String> {
    s.find(end)
        .map(|i| &s[i + end.len()..])
        .ok_or_else(|| format!("missing `{end}`"))
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// Parses `Name attr="v" ...>` or `.../>` (the `<` already consumed).
fn open_tag(s: &str) -> Result<(Node<'_>, &str), String> {
    let name_end = s
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .ok_or("unterminated start tag")?;
    let name = &s[..name_end];
    if !is_name(name) {
        return Err(format!("bad element name `{name}`"));
    }
    let mut rest = &s[name_end..];
    let mut attrs = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("/>") {
            return Ok((
                Node::Open {
                    name,
                    attrs,
                    empty: true,
                },
                after,
            ));
        }
        if let Some(after) = rest.strip_prefix('>') {
            return Ok((
                Node::Open {
                    name,
                    attrs,
                    empty: false,
                },
                after,
            ));
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("attribute without value in <{name}>"))?;
        let attr_name = rest[..eq].trim();
        if !is_name(attr_name) {
            return Err(format!("bad attribute name `{attr_name}` in <{name}>"));
        }
        let after_eq = rest[eq + 1..].trim_start();
        let quote = after_eq
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or_else(|| format!("unquoted attribute `{attr_name}` in <{name}>"))?;
        let body = &after_eq[1..];
        let close = body
            .find(quote)
            .ok_or_else(|| format!("unterminated attribute `{attr_name}` in <{name}>"))?;
        attrs.push((attr_name, unescape(&body[..close])?));
        rest = &body[close + 1..];
    }
}

/// Replaces the predefined entities and numeric character references.
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after.find(';').ok_or("`&` without `;`")?;
        let entity = &after[..semi];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x").or_else(|| entity.strip_prefix("#X")) {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity `&{}`", truncate(entity)))?
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_providers::twilio::twiml::{self, SayOptions, VoiceResponse};

    #[test]
    fn reads_what_our_twiml_writer_writes_including_escapes() {
        let tricky = r#"a&b<"c">'d'"#;
        let doc = twiml::connect_stream(
            "wss://voice.example.com/twilio/media?token=x&y=1",
            &[("call_id", "0190-abc"), ("odd", tricky), ("empty", "")],
        );
        let answer = parse_answer(doc.as_str()).unwrap();
        assert_eq!(answer.url, "wss://voice.example.com/twilio/media?token=x&y=1");
        assert_eq!(
            answer.parameters,
            vec![
                ("call_id".to_owned(), "0190-abc".to_owned()),
                ("odd".to_owned(), tricky.to_owned()),
                ("empty".to_owned(), String::new()),
            ]
        );
        assert_eq!(answer.parameter("call_id"), Some("0190-abc"));
    }

    #[test]
    fn say_and_hangup_is_a_refusal_with_the_text() {
        let doc = VoiceResponse::new()
            .say("Sorry, all lines are busy & full.", &SayOptions::default())
            .hangup()
            .build();
        match parse_answer(doc.as_str()) {
            Err(CallerError::Rejected { said }) => assert_eq!(said, "Sorry, all lines are busy & full."),
            other => panic!("{other:?}"),
        }
        let reject = r#"<?xml version="1.0"?><Response><Reject reason="busy"/></Response>"#;
        assert!(matches!(parse_answer(reject), Err(CallerError::Rejected { said }) if said.is_empty()));
    }

    #[test]
    fn accepts_hand_written_variants() {
        let doc = "<?xml version='1.0' encoding='UTF-8'?>\n<!-- hi -->\n<Response>\n  <Connect action='/next'>\n    \
                   <Stream url='wss://h/s' name=\"x\">\n      <Parameter name='n' value='&#x41;&#66;'/>\n    </Stream>\n  \
                   </Connect>\n  <Say>after</Say>\n</Response>";
        let answer = parse_answer(doc).unwrap();
        assert_eq!(answer.url, "wss://h/s");
        assert_eq!(answer.parameters, vec![("n".to_owned(), "AB".to_owned())]);
    }

    #[test]
    fn malformed_or_useless_twiml_is_an_error_not_a_panic() {
        for bad in [
            "",
            "not xml",
            "<Response>",
            "<Response><Connect></Response>",
            "<Other/>",
            "<Response><Connect><Stream/></Connect></Response>",
            "<Response><Connect><Stream url=wss://x/></Connect></Response>",
            "<Response><Say>&bogus;</Say></Response>",
            "<Response><Pause length=\"1\"/></Response>",
            "<Response><Start><Stream url=\"wss://x\"/></Start></Response>",
        ] {
            assert!(matches!(parse_answer(bad), Err(CallerError::Twiml(_))), "{bad:?}");
        }
    }
}
