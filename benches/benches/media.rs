//! Criterion benches for the per-frame media paths (one 20 ms frame per iteration).
//!
//! - `twilio_parse`: parse one inbound `media` JSON frame.
//! - `resample_8k_16k`, `resample_24k_8k`: one 20 ms block through the resampler.
//! - `vad_frame`: one 16 kHz frame through the turn detector.
//! - `inbound_frame`: JSON parse + base64 + μ-law + 8->16 kHz + VAD, over a 10 s
//!   caller leg that is 30% speech (1.2 s, 0.3 s backchannel, 1.5 s) and 70% a quiet
//!   line (-60 dBFS hiss): the caller mostly listens while the agent talks.
//! - `inbound_frame_silence`: the same path on a quiet line only (the energy gates
//!   keep earshot asleep).
//! - `inbound_frame_speech`: the same path on continuous speech (earshot runs on
//!   every 16 ms block).
//! - `outbound_frame`: player `poll_frame` + `OutboundWriter::media` (+ mark when due).
//! - `player_new`, `inbound_new`: the per-call set-up of the outbound and inbound paths.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use switchboard_media::inbound::InboundAudio;
use switchboard_media::player::{Player, PlayerConfig};
use switchboard_media::resample::{Alignment, Resampler};
use switchboard_media::twilio::{InboundEvent, OutboundWriter, parse_inbound};
use switchboard_media::ulaw;
use switchboard_media::vad::synth::{silence, to_i16, voiced, white};
use switchboard_media::vad::{TurnDetector, VadConfig};

const SID: &str = "MZ0123456789abcdef0123456789abcdef";

/// Speech then silence at 8 kHz, so the VAD sees both states across iterations.
fn caller_audio() -> Vec<i16> {
    to_i16(&[voiced(8000, 1000, 12000.0, 1), silence(8000, 1000)].concat())
}

/// A quiet phone line: hiss at about -60 dBFS, below the VAD's absolute floor.
fn quiet_line(ms: u32, seed: u64) -> Vec<f64> {
    white(8000, ms, 33.0, seed)
}

/// The typical caller leg `inbound_frame` runs: 10 s, 30% speech.
fn typical_call() -> Vec<i16> {
    to_i16(
        &[
            quiet_line(2000, 11),
            voiced(8000, 1200, 12000.0, 1),
            quiet_line(2500, 12),
            voiced(8000, 300, 9000.0, 2),
            quiet_line(2500, 13),
            voiced(8000, 1500, 11000.0, 3),
        ]
        .concat(),
    )
}

/// Run `inbound_frame`-style iterations over `frames`, looping.
fn bench_inbound(c: &mut Criterion, name: &str, frames: &[String]) {
    c.bench_function(name, |b| {
        let mut inbound = InboundAudio::new(VadConfig::default()).expect("valid config");
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % frames.len();
            match parse_inbound(black_box(&frames[i]), 4096) {
                Ok(InboundEvent::Media(m)) => black_box(inbound.on_media(&m).map(|f| f.pcm_16k.len()).ok()),
                _ => None,
            }
        })
    });
}

fn twilio_frames(pcm: &[i16]) -> Vec<String> {
    let mut w = OutboundWriter::default();
    let mut u = [0u8; 160];
    pcm.chunks_exact(160)
        .enumerate()
        .map(|(i, f)| {
            ulaw::encode_into(f, &mut u);
            w.media(SID, &u).replace(
                r#""media":{"#,
                &format!(
                    r#""sequenceNumber":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","#,
                    i + 2,
                    i + 1,
                    i * 20
                ),
            )
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let pcm = caller_audio();
    let frames = twilio_frames(&pcm);

    c.bench_function("twilio_parse", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % frames.len();
            black_box(parse_inbound(black_box(&frames[i]), 4096).is_ok())
        })
    });

    c.bench_function("resample_8k_16k", |b| {
        let mut r = Resampler::phone_to_wideband();
        let mut out = [0i16; 320];
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % (pcm.len() / 160);
            black_box(r.process_frame(&pcm[i * 160..(i + 1) * 160], &mut out).ok())
        })
    });

    c.bench_function("resample_24k_8k", |b| {
        let tts: Vec<i16> = (0..24000).map(|i| ((i % 120) as i16 - 60) * 200).collect();
        let mut r = Resampler::new(24000, 8000, Alignment::Stream).expect("supported pair");
        let mut out = [0i16; 160];
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % 50;
            black_box(r.process_frame(&tts[i * 480..(i + 1) * 480], &mut out).ok())
        })
    });

    c.bench_function("vad_frame", |b| {
        let mut up = Resampler::phone_to_wideband();
        let wide: Vec<[i16; 320]> = pcm
            .chunks_exact(160)
            .map(|f| {
                let mut o = [0i16; 320];
                let _ = up.process_frame(f, &mut o);
                o
            })
            .collect();
        let mut td = TurnDetector::new(VadConfig::default()).expect("valid config");
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % wide.len();
            black_box(td.push_frame(&wide[i], i as u64 * 20).count())
        })
    });

    bench_inbound(c, "inbound_frame", &twilio_frames(&typical_call()));
    bench_inbound(
        c,
        "inbound_frame_silence",
        &twilio_frames(&to_i16(&quiet_line(2000, 14))),
    );
    let speech = to_i16(&[voiced(8000, 1000, 12000.0, 1), voiced(8000, 1000, 9000.0, 2)].concat());
    bench_inbound(c, "inbound_frame_speech", &twilio_frames(&speech));

    c.bench_function("outbound_frame", |b| {
        let mut player = Player::new(PlayerConfig::default()).expect("valid config");
        let mut writer = OutboundWriter::with_capacity(512);
        // 10 s of 24 kHz TTS in 200 ms chunks, refilled when drained.
        let tts: Vec<i16> = (0..24000 * 10).map(|i| ((i % 240) as i16 - 120) * 100).collect();
        let refill = |p: &mut Player| {
            let _ = p.start_utterance("resp_1", 24000);
            for chunk in tts.chunks(4800) {
                let _ = p.push_chunk(chunk, None);
            }
            p.finish_utterance();
        };
        refill(&mut player);
        let mut now = 0u64;
        b.iter(|| {
            now += 20;
            let frame = match player.poll_frame(now) {
                Some(f) => f,
                None => {
                    refill(&mut player);
                    match player.poll_frame(now) {
                        Some(f) => f,
                        None => return 0,
                    }
                }
            };
            let mut n = writer.media(SID, &frame.ulaw).len();
            while let Some(name) = player.poll_mark() {
                n += writer.mark(SID, name).len();
            }
            black_box(n)
        })
    });
}

/// Per-call set-up of the media core (part of spawning a call).
fn setup(c: &mut Criterion) {
    c.bench_function("player_new", |b| {
        b.iter(|| black_box(Player::new(PlayerConfig::default()).map(|p| p.is_idle())))
    });
    c.bench_function("inbound_new", |b| {
        b.iter(|| black_box(InboundAudio::new(VadConfig::default()).map(|i| i.turn().in_speech())))
    });
}

criterion_group!(media, benches, setup);
criterion_main!(media);
