//! The Google speech adapters against the fake Google server: what goes on
//! the wire (encoding, rate, language, key, the μ-law bytes themselves) and
//! how the answers come back (transcripts, MULAW and LINEAR16 audio with and
//! without WAV headers).

use std::time::Duration;

use futures::StreamExt;
use switchboard_fakes::google_speech::{AudioHeader, FakeGoogleSpeech, GoogleReply};
use switchboard_providers::google_speech::{
    GoogleAudioEncoding, GoogleCredential, GoogleSpeechConfig, GoogleStt, GoogleTts,
};
use switchboard_providers::retry::RetryPolicy;
use switchboard_providers::{
    PcmChunk, ProviderError, ProviderErrorKind, SecretString, SpeechToText, StreamConfig, SttEvent, TextToSpeech,
};

fn config(fake: &FakeGoogleSpeech) -> GoogleSpeechConfig {
    let mut c = GoogleSpeechConfig::speech_to_text(SecretString::from("AIza-test-key"));
    c.base_url = fake.base_url();
    c.timeout = Duration::from_secs(5);
    c.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    };
    c
}

/// A waveform with every μ-law segment in it, positive and negative.
fn waveform(n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| ((i as f64 * 0.05).sin() * 30_000.0 * ((i % 97) as f64 / 97.0)) as i16)
        .collect()
}

async fn transcribe(
    stt: &GoogleStt,
    rate: u32,
    language: &str,
    samples: &[i16],
) -> Result<Vec<SttEvent>, ProviderError> {
    let mut stream = stt
        .start(StreamConfig {
            sample_rate: rate,
            language: language.to_owned(),
            interim_results: false,
        })
        .await?;
    // Pushed in call-sized frames, as the engine does.
    for frame in samples.chunks(160) {
        stream.push_audio(frame).await?;
    }
    stream.finish().await?;
    let mut events = Vec::new();
    while let Some(event) = stream.next_event().await? {
        events.push(event);
    }
    Ok(events)
}

async fn synthesize(tts: &GoogleTts, text: &str, voice: &str) -> (Vec<PcmChunk>, Option<ProviderError>) {
    let mut stream = tts.synthesize(text.to_owned(), voice.to_owned());
    let mut chunks = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => chunks.push(chunk),
            Err(e) => return (chunks, Some(e)),
        }
    }
    (chunks, None)
}

#[tokio::test]
async fn stt_sends_8khz_audio_as_mulaw_without_resampling() {
    let fake = FakeGoogleSpeech::start().await;
    fake.push_recognize(GoogleReply::Transcript(vec![
        "table for two".to_owned(),
        " at seven".to_owned(),
    ]));
    let stt = GoogleStt::new(config(&fake), reqwest::Client::new()).expect("stt");
    let samples = waveform(8_000);

    let events = transcribe(&stt, 8_000, "en-GB", &samples).await.expect("recognized");

    assert_eq!(
        events,
        [SttEvent::Final {
            text: "table for two at seven".to_owned(),
            start_ms: 0,
            end_ms: 1_000,
        }]
    );
    let requests = fake.recognize_requests();
    assert_eq!(requests.len(), 1);
    let seen = &requests[0];
    assert_eq!(seen.encoding.as_deref(), Some("MULAW"));
    assert_eq!(seen.sample_rate_hertz, Some(8_000));
    assert_eq!(seen.language_code.as_deref(), Some("en-GB"));
    assert_eq!(seen.credentials.api_key.as_deref(), Some("AIza-test-key"));
    assert_eq!(seen.credentials.bearer, None);
    // One byte per input sample (no resampling), each the G.711 code of its
    // sample by both our encoder and the fake's independent one.
    let expected: Vec<u8> = samples.iter().map(|&s| switchboard_media::ulaw::encode(s)).collect();
    assert_eq!(seen.audio, expected);
    let fake_encoded: Vec<u8> = samples
        .iter()
        .map(|&s| switchboard_fakes::google_speech::ulaw_encode(s))
        .collect();
    assert_eq!(seen.audio, fake_encoded);
}

#[tokio::test]
async fn stt_sends_other_rates_as_linear16_and_bearer_tokens() {
    let fake = FakeGoogleSpeech::start().await;
    fake.push_recognize(GoogleReply::transcript("hello"));
    let mut c = config(&fake);
    c.credential = GoogleCredential::AccessToken(SecretString::from("ya29.token"));
    c.language = "de-DE".to_owned();
    c.stt_model = Some("phone_call".to_owned());
    let stt = GoogleStt::new(c, reqwest::Client::new()).expect("stt");
    let samples = waveform(1_600);

    let events = transcribe(&stt, 16_000, "", &samples).await.expect("recognized");

    assert!(
        matches!(&events[..], [SttEvent::Final { text, end_ms: 100, .. }] if text == "hello"),
        "{events:?}"
    );
    let seen = &fake.recognize_requests()[0];
    assert_eq!(seen.encoding.as_deref(), Some("LINEAR16"));
    assert_eq!(seen.sample_rate_hertz, Some(16_000));
    assert_eq!(
        seen.language_code.as_deref(),
        Some("de-DE"),
        "empty stream language falls back to config"
    );
    assert_eq!(seen.model.as_deref(), Some("phone_call"));
    assert_eq!(seen.credentials.bearer.as_deref(), Some("ya29.token"));
    assert_eq!(seen.credentials.api_key, None);
    let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    assert_eq!(seen.audio, pcm);
}

#[tokio::test]
async fn stt_no_speech_yields_no_final_and_empty_segment_sends_nothing() {
    let fake = FakeGoogleSpeech::start().await;
    fake.push_recognize(GoogleReply::Transcript(vec![]));
    let stt = GoogleStt::new(config(&fake), reqwest::Client::new()).expect("stt");

    assert_eq!(transcribe(&stt, 8_000, "en-US", &waveform(800)).await, Ok(vec![]));
    assert_eq!(transcribe(&stt, 8_000, "en-US", &[]).await, Ok(vec![]));
    assert_eq!(fake.recognize_requests().len(), 1);
}

#[tokio::test]
async fn stt_refuses_rates_google_does_not_take() {
    let fake = FakeGoogleSpeech::start().await;
    let stt = GoogleStt::new(config(&fake), reqwest::Client::new()).expect("stt");
    let err = transcribe(&stt, 4_000, "en-US", &waveform(10))
        .await
        .expect_err("4 kHz");
    assert_eq!(err.provider, "google_stt");
    assert!(matches!(err.kind, ProviderErrorKind::Config(_)), "{err}");
    assert!(fake.recognize_requests().is_empty());
}

fn tts_config(fake: &FakeGoogleSpeech, encoding: GoogleAudioEncoding, rate: u32) -> GoogleSpeechConfig {
    let mut c = config(fake);
    c.encoding = encoding;
    c.sample_rate = rate;
    c.voice = "en-US-Standard-C".to_owned();
    c
}

fn joined(chunks: &[PcmChunk]) -> Vec<i16> {
    chunks.iter().flat_map(|c| c.samples.iter().copied()).collect()
}

#[tokio::test]
async fn tts_mulaw_decodes_to_the_expected_samples_in_100ms_chunks() {
    let fake = FakeGoogleSpeech::start().await;
    let samples = waveform(2_000);
    fake.push_synthesize(GoogleReply::audio(samples.clone()));
    let tts = GoogleTts::new(
        tts_config(&fake, GoogleAudioEncoding::Mulaw, 8_000),
        reqwest::Client::new(),
    )
    .expect("tts");

    let (chunks, err) = synthesize(&tts, "Your table is booked.", "").await;

    assert_eq!(err, None);
    // μ-law is lossy: what comes back is each sample's G.711 round trip.
    let expected: Vec<i16> = samples
        .iter()
        .map(|&s| switchboard_media::ulaw::decode(switchboard_media::ulaw::encode(s)))
        .collect();
    assert_eq!(joined(&chunks), expected);
    assert!(chunks.iter().all(|c| c.sample_rate == 8_000));
    let sizes: Vec<usize> = chunks.iter().map(|c| c.samples.len()).collect();
    assert_eq!(sizes, [800, 800, 400], "at most 100 ms each");
    let seen = &fake.synthesize_requests()[0];
    assert_eq!(seen.audio_encoding.as_deref(), Some("MULAW"));
    assert_eq!(seen.sample_rate_hertz, Some(8_000));
    assert_eq!(seen.text.as_deref(), Some("Your table is booked."));
    assert_eq!(
        seen.voice_name.as_deref(),
        Some("en-US-Standard-C"),
        "empty voice uses the configured one"
    );
    assert_eq!(seen.language_code.as_deref(), Some("en-US"));
    assert_eq!(seen.credentials.api_key.as_deref(), Some("AIza-test-key"));
}

#[tokio::test]
async fn tts_linear16_decodes_exactly_with_or_without_a_header() {
    let fake = FakeGoogleSpeech::start().await;
    let samples = waveform(3_000);
    for header in [AudioHeader::Wav, AudioHeader::WavWithExtraChunk, AudioHeader::None] {
        fake.push_synthesize(GoogleReply::Audio {
            samples: samples.clone(),
            header,
        });
    }
    let tts = GoogleTts::new(
        tts_config(&fake, GoogleAudioEncoding::Linear16, 24_000),
        reqwest::Client::new(),
    )
    .expect("tts");

    for header in ["plain WAV", "WAV with an extra chunk", "no header"] {
        let (chunks, err) = synthesize(&tts, "Hello.", "en-GB-Neural2-A").await;
        assert_eq!(err, None, "{header}");
        assert_eq!(joined(&chunks), samples, "{header}");
        assert!(
            chunks
                .iter()
                .all(|c| c.sample_rate == 24_000 && c.samples.len() <= 2_400),
            "{header}"
        );
    }
    let seen = &fake.synthesize_requests()[0];
    assert_eq!(seen.audio_encoding.as_deref(), Some("LINEAR16"));
    assert_eq!(seen.sample_rate_hertz, Some(24_000));
    assert_eq!(seen.voice_name.as_deref(), Some("en-GB-Neural2-A"));
    assert_eq!(seen.language_code.as_deref(), Some("en-GB"), "the voice's language");
}

#[tokio::test]
async fn tts_empty_text_makes_no_request_and_long_text_is_refused() {
    let fake = FakeGoogleSpeech::start().await;
    let tts = GoogleTts::new(
        tts_config(&fake, GoogleAudioEncoding::Mulaw, 8_000),
        reqwest::Client::new(),
    )
    .expect("tts");

    let (chunks, err) = synthesize(&tts, "  ", "").await;
    assert!(chunks.is_empty() && err.is_none());

    let (_, err) = synthesize(&tts, &"a".repeat(5_001), "").await;
    let err = err.expect("too long");
    assert_eq!(err.provider, "google_tts");
    assert!(matches!(err.kind, ProviderErrorKind::Config(_)), "{err}");
    assert!(fake.synthesize_requests().is_empty());
}

#[tokio::test]
async fn tts_base64_garbage_is_malformed() {
    let fake = FakeGoogleSpeech::start().await;
    fake.push_synthesize(GoogleReply::Malformed(
        r#"{"audioContent":"!!not base64!!"}"#.to_owned(),
    ));
    let tts = GoogleTts::new(
        tts_config(&fake, GoogleAudioEncoding::Mulaw, 8_000),
        reqwest::Client::new(),
    )
    .expect("tts");

    let (chunks, err) = synthesize(&tts, "Hi", "").await;

    assert!(chunks.is_empty());
    let err = err.expect("bad base64");
    assert!(matches!(err.kind, ProviderErrorKind::Malformed(_)), "{err}");
    assert_eq!(fake.synthesize_requests().len(), 1, "malformed answers are not retried");
}
