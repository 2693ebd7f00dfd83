//! The OpenAI-compatible adapter against the real bundled speech server
//! (`speech/server.py`: Whisper tiny.en + espeak-ng), started from
//! `speech/.venv`. CI runs `scripts/install-speech` first; without the venv
//! this test fails and says how to install it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use switchboard_providers::{
    OpenAiSpeechConfig, OpenAiStt, OpenAiTts, SpeechToText, StreamConfig, SttEvent, TextToSpeech, speech_http_client,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Starts the server on a free port; returns it (killed on drop) and its URL.
async fn start_server() -> (Child, String) {
    let root = repo_root();
    let python = root.join("speech/.venv/bin/python");
    assert!(
        python.exists(),
        "the local speech server is not installed: {} is missing. Run scripts/install-speech first.",
        python.display()
    );
    let mut child = Command::new(&python)
        .arg(root.join("speech/server.py"))
        .args(["--host", "127.0.0.1", "--port", "0", "--threads", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn speech/server.py");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // A guard against hanging forever, not a performance bound: loading the
    // model takes about a second.
    let url = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            if let Some(url) = line.strip_prefix("speech server listening on ") {
                return url.trim().to_owned();
            }
        }
        panic!("speech server exited before it was ready (see its stderr above)");
    })
    .await
    .expect("speech server did not become ready");
    (child, url)
}

fn local_config(url: &str) -> OpenAiSpeechConfig {
    let mut config = OpenAiSpeechConfig::local(url, 22_050);
    config.timeout = Duration::from_secs(120);
    config
}

fn stream_config(rate: u32) -> StreamConfig {
    StreamConfig {
        sample_rate: rate,
        language: "en-US".to_owned(),
        interim_results: false,
    }
}

async fn synthesize(tts: &OpenAiTts, text: &str) -> (u32, Vec<i16>) {
    let mut stream = tts.synthesize(text.to_owned(), "default".to_owned());
    let mut rate = 0;
    let mut samples = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("synthesis chunk");
        rate = chunk.sample_rate;
        samples.extend(chunk.samples);
    }
    (rate, samples)
}

/// Seconds of 10 ms windows whose RMS is clearly above silence.
fn voiced_seconds(rate: u32, samples: &[i16]) -> f64 {
    let window = (rate / 100) as usize;
    let voiced = samples
        .chunks(window)
        .filter(|w| {
            let energy: f64 = w.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / w.len() as f64;
            energy.sqrt() > 300.0
        })
        .count();
    voiced as f64 * 0.01
}

async fn transcribe(stt: &OpenAiStt, rate: u32, samples: &[i16]) -> String {
    let mut stream = stt.start(stream_config(rate)).await.expect("start");
    for piece in samples.chunks(rate as usize / 50) {
        stream.push_audio(piece).await.expect("push");
    }
    stream.finish().await.expect("transcription");
    let mut text = String::new();
    while let Some(event) = stream.next_event().await.expect("event") {
        if let SttEvent::Final { text: t, .. } = event {
            text.push_str(&t);
        }
    }
    text.to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_server_speaks_and_listens_through_the_openai_adapter() {
    let (mut child, url) = start_server().await;
    let client = speech_http_client(Duration::from_secs(5)).expect("client");
    let tts = OpenAiTts::new(local_config(&url), client.clone()).expect("tts");
    let stt = OpenAiStt::new(local_config(&url), client).expect("stt");

    // TTS: real espeak-ng audio, streamed.
    let (rate, hello) = synthesize(&tts, "Hello there").await;
    assert_eq!(rate, 22_050);
    let voiced = voiced_seconds(rate, &hello);
    assert!(
        voiced > 0.3,
        "only {voiced:.2} s of non-silent audio for \"Hello there\""
    );

    // Round trip: what espeak-ng says, Whisper hears.
    let (rate, sentence) = synthesize(&tts, "I would like to book an appointment for tomorrow at three.").await;
    let heard = transcribe(&stt, rate, &sentence).await;
    assert!(
        heard.contains("appointment") && heard.contains("tomorrow"),
        "heard: {heard:?}"
    );

    // Phone audio: the committed 8 kHz fixture ("Hi, I'd like to book a table
    // for two at seven tonight, please."), resampled by the server.
    let wav = switchboard_media::wav::read_mono(include_bytes!("../../media/tests/fixtures/booking_8k.wav"))
        .expect("fixture");
    assert_eq!(wav.sample_rate, 8_000);
    let heard = transcribe(&stt, wav.sample_rate, &wav.samples).await;
    assert!(heard.contains("table") && heard.contains("seven"), "heard: {heard:?}");

    child.start_kill().expect("stop the server");
    child.wait().await.expect("reap the server");
}
