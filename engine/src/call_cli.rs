//! `switchboard call`: place a synthetic Twilio call on a running engine,
//! print what happens live (progress, transcript, turn latency), and save what
//! the bot said as a WAV.
//!
//! Defaults come from `<data_dir>/demo.json`, written by
//! `switchboard admin demo`; every value can be overridden by a flag.
//!
//! Guarantees: secrets from `demo.json` are never printed; the command exits
//! non-zero with a message naming the cause (engine down, credentials that do
//! not match the engine, refused call, unreadable WAV); the transcript is
//! best-effort and never fails the call (a failed login is reported and the
//! call goes on without it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use clap::Args;
use switchboard_caller::{CallOptions, CallReport, CallerError, CallerEvent, Hangup, audio, live};
use switchboard_domain::{CallEvent, CallEventKind, Speaker};
use switchboard_engine::admin::DemoFile;
use tokio::sync::{mpsc, oneshot};
use url::Url;

/// How long to keep the transcript open after the call, waiting for the last lines.
const TRANSCRIPT_GRACE: Duration = Duration::from_secs(3);

/// `switchboard call` arguments.
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// What the caller says: a 16-bit PCM WAV (mono or stereo, any sample rate).
    #[arg(long, value_name = "FILE")]
    pub wav: PathBuf,
    /// Engine to call (where /twilio/voice is served). Default: the URL in demo.json.
    #[arg(long, value_name = "URL")]
    pub engine: Option<Url>,
    /// Public base URL the engine checks webhook signatures against. Default: the URL in demo.json, else --engine.
    #[arg(long, value_name = "URL")]
    pub signing_base: Option<Url>,
    /// Number to dial (E.164). Default: the demo number.
    #[arg(long, value_name = "E164")]
    pub number: Option<String>,
    /// Caller ID presented to the engine.
    #[arg(long, value_name = "E164", default_value = "+15551230000")]
    pub from: String,
    /// Where to save what the bot said (8 kHz mono WAV).
    #[arg(long, value_name = "FILE", default_value = "bot-reply.wav")]
    pub out: PathBuf,
    /// Seconds of silence before the WAV starts (the greeting plays meanwhile).
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    pub lead: Duration,
    /// Longest time to stay on the line after the WAV ends, in seconds.
    #[arg(long, value_name = "SECS", default_value = "15", value_parser = parse_secs)]
    pub tail: Duration,
    /// Hang up once the bot has answered and been quiet this long (seconds; 0 waits for the whole tail).
    #[arg(long, value_name = "SECS", default_value = "2.5", value_parser = parse_secs)]
    pub idle_end: Duration,
    /// Twilio account SID the engine knows. Default: from demo.json.
    #[arg(long, value_name = "AC..")]
    pub account_sid: Option<String>,
    /// Twilio auth token that signs the webhook. Default: from demo.json.
    #[arg(long, value_name = "TOKEN")]
    pub auth_token: Option<String>,
    /// Login for the live transcript. Default: from demo.json.
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,
    /// Password for --email. Default: from demo.json.
    #[arg(long, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Do not log in and follow the live transcript.
    #[arg(long)]
    pub no_transcript: bool,
}

/// A duration in (possibly fractional) seconds.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is not a non-negative number of seconds"))
}

/// Everything the call needs, after flags and demo.json are merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub engine: Url,
    pub signing_base: Url,
    pub account_sid: String,
    pub auth_token: String,
    pub number: String,
    /// `None` when no login is known or `--no-transcript`.
    pub login: Option<(String, String)>,
}

/// Merges the flags over `demo` (flags win). `demo_path` only names the file in errors.
pub fn resolve(args: &CallArgs, demo: Option<&DemoFile>, demo_path: &Path) -> anyhow::Result<Resolved> {
    let demo_url = demo
        .map(|d| Url::parse(&d.engine_url).with_context(|| format!("bad engine_url in {}", demo_path.display())))
        .transpose()?;
    let missing = |what: &str, flag: &str| {
        anyhow!(
            "no {what}: run `switchboard admin demo` first (it writes {}) or pass {flag}",
            demo_path.display()
        )
    };
    let engine = args
        .engine
        .clone()
        .or_else(|| demo_url.clone())
        .ok_or_else(|| missing("engine URL", "--engine URL"))?;
    let signing_base = args.signing_base.clone().or(demo_url).unwrap_or_else(|| engine.clone());
    let account_sid = args
        .account_sid
        .clone()
        .or_else(|| demo.map(|d| d.account_sid.clone()))
        .ok_or_else(|| missing("Twilio account SID", "--account-sid"))?;
    let auth_token = args
        .auth_token
        .clone()
        .or_else(|| demo.map(|d| d.auth_token.clone()))
        .ok_or_else(|| missing("Twilio auth token", "--auth-token"))?;
    let number = args
        .number
        .clone()
        .or_else(|| demo.map(|d| d.number.clone()))
        .ok_or_else(|| missing("number to call", "--number"))?;
    let login = if args.no_transcript {
        None
    } else {
        let email = args.email.clone().or_else(|| demo.map(|d| d.email.clone()));
        let password = args.password.clone().or_else(|| demo.map(|d| d.password.clone()));
        email.zip(password)
    };
    Ok(Resolved {
        engine,
        signing_base,
        account_sid,
        auth_token,
        number,
        login,
    })
}

/// Runs `switchboard call`.
pub async fn run(data_dir: &Path, args: CallArgs) -> anyhow::Result<()> {
    let demo_path = DemoFile::path(data_dir);
    let demo = DemoFile::load(&demo_path)?;
    let r = resolve(&args, demo.as_ref(), &demo_path)?;
    let caller_audio = audio::load_wav_8k(&args.wav)?;
    println!(
        "calling {} on {} with {} ({:.1} s of audio)",
        r.number,
        r.engine,
        args.wav.display(),
        caller_audio.len() as f64 / 8000.0
    );

    let token = match &r.login {
        Some((email, password)) => match live::login(&r.engine, email, password).await {
            Ok(token) => Some(token),
            Err(e @ CallerError::Unreachable { .. }) => return Err(explain(e, &r)),
            Err(e) => {
                println!("transcript off: login as {email} failed: {e}");
                None
            }
        },
        None => None,
    };

    let mut opts = CallOptions::new(r.engine.clone(), &r.account_sid, &r.auth_token, &args.from, &r.number);
    opts.signing_base = Some(r.signing_base.clone());
    opts.caller_audio = Arc::from(caller_audio);
    opts.lead_silence = args.lead;
    opts.tail = args.tail;
    opts.idle_end = (!args.idle_end.is_zero()).then_some(args.idle_end);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let call = tokio::spawn(switchboard_caller::place_call(opts, Some(tx)));

    let mut transcript: Option<(tokio::task::JoinHandle<()>, oneshot::Receiver<()>)> = None;
    while let Some(event) = rx.recv().await {
        if let CallerEvent::Answered { call_id: Some(id), .. } = &event
            && let Some(token) = &token
        {
            transcript = Some(follow_transcript(r.engine.clone(), token.clone(), id.clone()));
        }
        if let Some(line) = progress_line(&event) {
            println!("{line}");
        }
    }
    let result = call.await.context("the call task failed")?;
    if let Some((task, ended)) = transcript {
        // The last lines (the agent's goodbye, call_ended) are published as the call winds down.
        let _ = tokio::time::timeout(TRANSCRIPT_GRACE, ended).await;
        task.abort();
    }
    let report = result.map_err(|e| explain(e, &r))?;
    audio::save_wav_8k(&args.out, &report.bot_audio)?;
    println!("{}", summary(&report, &args.out));
    Ok(())
}

/// Turns a caller error into the message a newcomer can act on.
fn explain(e: CallerError, r: &Resolved) -> anyhow::Error {
    match e {
        CallerError::Unreachable { url, reason } => anyhow!(
            "engine not reachable at {url} ({reason}); start it with scripts/run (or `switchboard serve`), \
             or pass --engine URL"
        ),
        CallerError::Http {
            status: status @ (401 | 403),
            body,
        } => anyhow!(
            "the engine refused the webhook (HTTP {status}: {body}): the Twilio credentials or the signing URL do not \
             match this engine (signed for {}); rerun `switchboard admin demo` against the same --data-dir, or pass \
             --signing-base with the engine's http.public_base_url",
            r.signing_base
        ),
        CallerError::Http { status: 404, body } => anyhow!(
            "the engine does not know {} (HTTP 404: {body}); rerun `switchboard admin demo` or pass --number",
            r.number
        ),
        CallerError::Rejected { said } if said.is_empty() => anyhow!("the engine answered but refused the call"),
        CallerError::Rejected { said } => anyhow!("the engine answered but refused the call, saying {said:?}"),
        other => anyhow!(other),
    }
}

fn stamp(at: Duration) -> String {
    format!("[{:>6.2}s]", at.as_secs_f64())
}

/// The printed line for a progress event (`None`: not worth a line).
fn progress_line(event: &CallerEvent) -> Option<String> {
    Some(match event {
        CallerEvent::Answered { call_sid, call_id } => match call_id {
            Some(id) => format!("answered: call {id} ({call_sid})"),
            None => format!("answered ({call_sid})"),
        },
        CallerEvent::Started { stream_sid } => format!("{} connected (stream {stream_sid})", stamp(Duration::ZERO)),
        CallerEvent::CallerSpeechStarted { at } => format!("{} caller speaking", stamp(*at)),
        CallerEvent::CallerSpeechEnded { at } => format!("{} caller done", stamp(*at)),
        CallerEvent::BotAudioStarted { at } => format!("{} bot speaking", stamp(*at)),
        CallerEvent::BotAudioStopped { at } => format!("{} bot quiet", stamp(*at)),
        CallerEvent::Clear { at } => format!("{} barge-in (clear)", stamp(*at)),
        CallerEvent::DtmfSent { digit, at } => format!("{} pressed {digit}", stamp(*at)),
        CallerEvent::Closed {
            code: Some(code),
            reason,
        } if !reason.is_empty() => {
            format!("socket closed by the engine: {code} {reason}")
        }
        CallerEvent::MarkReceived { .. } | CallerEvent::MarkEchoed { .. } | CallerEvent::Closed { .. } => {
            return None;
        }
    })
}

/// Follows the live socket in the background, printing transcript lines.
/// The receiver resolves once `call_ended` is seen (or the socket ends).
fn follow_transcript(
    engine: Url,
    token: String,
    call_id: String,
) -> (tokio::task::JoinHandle<()>, oneshot::Receiver<()>) {
    let (done_tx, done_rx) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut events = match live::watch(&engine, &token, &call_id).await {
            Ok(events) => events,
            Err(e) => {
                println!("transcript off: {e}");
                let _ = done_tx.send(());
                return;
            }
        };
        use futures::StreamExt as _;
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    let ended = matches!(event.kind, CallEventKind::CallEnded { .. });
                    if let Some(line) = transcript_line(&event) {
                        println!("{line}");
                    }
                    if ended {
                        break;
                    }
                }
                Err(e) => println!("transcript: {e}"),
            }
        }
        let _ = done_tx.send(());
    });
    (task, done_rx)
}

fn ms(v: Option<u32>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"))
}

/// The printed line for a live event (`None`: not part of the transcript view).
fn transcript_line(event: &CallEvent) -> Option<String> {
    Some(match &event.kind {
        CallEventKind::TranscriptFinal {
            speaker,
            text,
            interrupted,
            ..
        } => {
            let who = match speaker {
                Speaker::Caller => "caller",
                _ => "agent",
            };
            let cut = if *interrupted { " [interrupted]" } else { "" };
            format!("    {who}: {text}{cut}")
        }
        CallEventKind::TurnLatency(t) => format!(
            "    (turn {}: stt {}, first token {}, first audio {}, first frame {}, heard {})",
            t.turn_id,
            ms(t.stt_final_ms),
            ms(t.agent_first_token_ms),
            ms(t.tts_first_audio_ms),
            ms(t.first_frame_ms),
            ms(t.mark_confirmed_ms)
        ),
        CallEventKind::BargeIn {
            heard_ms, heard_text, ..
        } => format!("    (barge-in after {heard_ms} ms of \"{heard_text}\")"),
        CallEventKind::Dtmf { digits } => format!("    (keys {digits})"),
        CallEventKind::CallEnded { status, reason } => format!("    (call ended: {status}, {reason})"),
        CallEventKind::CallStarted { .. }
        | CallEventKind::StatusChanged { .. }
        | CallEventKind::TranscriptPartial { .. } => return None,
    })
}

fn summary(report: &CallReport, out: &Path) -> String {
    let hangup = match &report.hangup {
        Hangup::Caller => "we hung up".to_owned(),
        Hangup::Engine => match &report.close {
            Some((code, reason)) if !reason.is_empty() => format!("the engine hung up ({code} {reason})"),
            Some((code, _)) => format!("the engine hung up ({code})"),
            None => "the engine hung up".to_owned(),
        },
        Hangup::ConnectionLost(why) => format!("connection lost: {why}"),
    };
    let first = report
        .first_bot_audio
        .map_or_else(|| "never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
    let bot_secs: f64 = report
        .bot_speech_segments
        .iter()
        .map(|(a, b)| b.saturating_sub(*a).as_secs_f64())
        .sum();
    format!(
        "call {} done in {:.1} s: {hangup}\n  frames: {} sent, {} received; marks: {} received, {} echoed; \
         barge-ins: {}\n  bot audio: first at {first}, {bot_secs:.1} s in {} segment(s){}\n  saved the bot's \
         audio to {}",
        report.call_id.as_deref().unwrap_or(&report.call_sid),
        report.duration.as_secs_f64(),
        report.frames_sent,
        report.frames_received,
        report.marks_received,
        report.marks_echoed,
        report.clears.len(),
        report.bot_speech_segments.len(),
        if report.invalid_messages > 0 {
            format!(
                "\n  {} invalid message(s) from the engine (see the log)",
                report.invalid_messages
            )
        } else {
            String::new()
        },
        out.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        args: CallArgs,
    }

    fn parse(argv: &[&str]) -> Result<CallArgs, clap::Error> {
        T::try_parse_from(std::iter::once("call").chain(argv.iter().copied())).map(|t| t.args)
    }

    fn demo() -> DemoFile {
        DemoFile {
            engine_url: "http://127.0.0.1:8080".into(),
            number: "+15005550006".into(),
            account_sid: "AC0123".into(),
            auth_token: "t0k3n-value".into(),
            email: "demo@switchboard.local".into(),
            password: "pa55-value".into(),
            tenant_id: None,
            agent_id: None,
        }
    }

    #[test]
    fn defaults_and_durations_parse() {
        let a = parse(&["--wav", "hi.wav"]).unwrap();
        assert_eq!(a.wav, PathBuf::from("hi.wav"));
        assert_eq!(a.out, PathBuf::from("bot-reply.wav"));
        assert_eq!(a.from, "+15551230000");
        assert_eq!(a.tail, Duration::from_secs(15));
        assert_eq!(a.idle_end, Duration::from_millis(2500));
        assert!(!a.no_transcript);
        let a = parse(&[
            "--wav",
            "x",
            "--tail",
            "0.5",
            "--engine",
            "http://h:1",
            "--no-transcript",
        ])
        .unwrap();
        assert_eq!(a.tail, Duration::from_millis(500));
        assert_eq!(a.engine.unwrap().as_str(), "http://h:1/");
        assert!(a.no_transcript);
        assert!(parse(&[]).is_err(), "--wav is required");
        assert!(parse(&["--wav", "x", "--tail", "-1"]).is_err());
        assert!(parse(&["--wav", "x", "--tail", "soon"]).is_err());
        assert!(parse(&["--wav", "x", "--engine", "not a url"]).is_err());
    }

    #[test]
    fn demo_json_fills_what_flags_leave_out() {
        let path = Path::new("/d/demo.json");
        let r = resolve(&parse(&["--wav", "x"]).unwrap(), Some(&demo()), path).unwrap();
        assert_eq!(r.engine.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(r.signing_base, r.engine);
        assert_eq!(
            (r.account_sid.as_str(), r.auth_token.as_str()),
            ("AC0123", "t0k3n-value")
        );
        assert_eq!(r.number, "+15005550006");
        assert_eq!(r.login, Some(("demo@switchboard.local".into(), "pa55-value".into())));

        // Flags win; the signature still targets the public base from demo.json.
        let args = parse(&[
            "--wav",
            "x",
            "--engine",
            "http://10.0.0.5:9000",
            "--number",
            "+15550001111",
            "--auth-token",
            "other",
            "--no-transcript",
        ])
        .unwrap();
        let r = resolve(&args, Some(&demo()), path).unwrap();
        assert_eq!(r.engine.as_str(), "http://10.0.0.5:9000/");
        assert_eq!(r.signing_base.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(r.number, "+15550001111");
        assert_eq!(r.auth_token, "other");
        assert_eq!(r.login, None);
    }

    #[test]
    fn without_demo_json_the_flags_must_say_everything() {
        let path = Path::new("/d/demo.json");
        let err = resolve(&parse(&["--wav", "x"]).unwrap(), None, path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("switchboard admin demo") && err.contains("/d/demo.json"),
            "{err}"
        );
        let args = parse(&[
            "--wav",
            "x",
            "--engine",
            "http://h:1",
            "--account-sid",
            "AC1",
            "--auth-token",
            "t",
            "--number",
            "+15550001111",
        ])
        .unwrap();
        let r = resolve(&args, None, path).unwrap();
        assert_eq!(r.signing_base, r.engine);
        assert_eq!(r.login, None);
        let no_token = parse(&["--wav", "x", "--engine", "http://h:1", "--account-sid", "AC1"]).unwrap();
        assert!(
            resolve(&no_token, None, path)
                .unwrap_err()
                .to_string()
                .contains("--auth-token")
        );
    }

    #[test]
    fn demo_json_round_trips_with_owner_only_permissions() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = DemoFile::path(dir.path());
        assert_eq!(DemoFile::load(&path).unwrap(), None);
        demo().write(&path).unwrap();
        assert_eq!(DemoFile::load(&path).unwrap(), Some(demo()));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&path, "{not json").unwrap();
        assert!(DemoFile::load(&path).is_err());
        // Debug never shows the secrets.
        let shown = format!("{:?}", demo());
        assert!(
            !shown.contains("t0k3n-value") && !shown.contains("pa55-value"),
            "{shown}"
        );
    }

    #[test]
    fn errors_name_the_fix() {
        let r = resolve(&parse(&["--wav", "x"]).unwrap(), Some(&demo()), Path::new("d")).unwrap();
        let e = explain(
            CallerError::Unreachable {
                url: "http://127.0.0.1:8080/twilio/voice".into(),
                reason: "connection refused".into(),
            },
            &r,
        )
        .to_string();
        assert!(
            e.starts_with("engine not reachable at http://127.0.0.1:8080/twilio/voice") && e.contains("scripts/run")
        );
        let e = explain(
            CallerError::Http {
                status: 403,
                body: "bad".into(),
            },
            &r,
        )
        .to_string();
        assert!(e.contains("switchboard admin demo"), "{e}");
        let e = explain(CallerError::Rejected { said: "Busy.".into() }, &r).to_string();
        assert!(e.contains("\"Busy.\""), "{e}");
    }
}
