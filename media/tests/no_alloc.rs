//! Proves the per-frame media paths allocate nothing in steady state.
//!
//! A counting global allocator records allocations made by the current thread
//! while counting is switched on (thread-local, so the test harness's own
//! threads cannot disturb the count). Each path is warmed up first (buffers grow
//! to their working size), then run for a few seconds of frames with counting on.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use switchboard_media::inbound::InboundAudio;
use switchboard_media::player::{MarkOutcome, Player, PlayerConfig};
use switchboard_media::twilio::{InboundEvent, OutboundWriter, parse_inbound};
use switchboard_media::ulaw;
use switchboard_media::vad::VadConfig;
use switchboard_media::vad::synth::{silence, to_i16, voiced, white};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn note() {
    // try_with: the allocator can run during thread teardown, after the TLS is gone.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    COUNT.with(|c| c.get())
}

/// Twilio inbound media frames (JSON text) for `pcm` at 8 kHz.
fn twilio_frames(pcm: &[i16]) -> Vec<String> {
    let mut w = OutboundWriter::default();
    let mut u = [0u8; 160];
    pcm.chunks_exact(160)
        .enumerate()
        .map(|(i, f)| {
            ulaw::encode_into(f, &mut u);
            let ts = i * 20;
            w.media("MZ0123456789abcdef0123456789abcdef", &u).replace(
                r#""media":{"#,
                &format!(
                    r#""sequenceNumber":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{ts}","#,
                    i + 2,
                    i + 1
                ),
            )
        })
        .collect()
}

#[test]
fn the_checker_sees_allocations() {
    // Guards against a test that passes because counting is broken.
    let n = allocations(|| {
        let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(100));
        std::hint::black_box(v);
    });
    assert_eq!(n, 1);
}

#[test]
fn inbound_frame_path_does_not_allocate() {
    // Speech, silence and noise so every VAD state (start, confirm, end) is exercised.
    let pcm = to_i16(
        &[
            silence(8000, 500),
            voiced(8000, 1500, 12000.0, 1),
            silence(8000, 1000),
            white(8000, 1000, 800.0, 2),
        ]
        .concat(),
    );
    let frames = twilio_frames(&pcm);
    let mut inbound = InboundAudio::new(VadConfig::default()).unwrap();
    let mut events = 0usize;
    let mut run = |frames: &[String], events: &mut usize| {
        for text in frames {
            let Ok(InboundEvent::Media(m)) = parse_inbound(text, 4096) else {
                panic!("bad frame")
            };
            let out = inbound.on_media(&m).unwrap();
            assert_eq!(out.pcm_16k.len(), 320);
            *events += out.events.count();
        }
    };
    run(&frames[..10], &mut events);
    let n = allocations(|| run(&frames[10..], &mut events));
    assert_eq!(
        n,
        0,
        "allocations on the inbound path over {} frames",
        frames.len() - 10
    );
    assert!(events >= 3, "the VAD produced its events while counted ({events})");
}

#[test]
fn outbound_frame_path_does_not_allocate() {
    let mut player = Player::new(PlayerConfig::default()).unwrap();
    let mut writer = OutboundWriter::with_capacity(512);
    let sid = "MZ0123456789abcdef0123456789abcdef";
    player.start_utterance("resp_1", 24000).unwrap();
    let tts: Vec<i16> = (0..24000 * 3).map(|i| ((i % 240) as i16 - 120) * 100).collect();
    for (i, chunk) in tts.chunks(4800).enumerate() {
        player.push_chunk(chunk, Some(i * 10..i * 10 + 10)).unwrap();
    }
    player.finish_utterance();
    let mut sent = 0usize;
    let mut marks = 0usize;
    let mut tick = |now: u64, sent: &mut usize, marks: &mut usize| {
        while let Some(frame) = player.poll_frame(now) {
            *sent += writer.media(sid, &frame.ulaw).len();
            let mut echo = [0u8; 64];
            let mut echo_len = 0;
            while let Some(name) = player.poll_mark() {
                writer.mark(sid, name);
                echo[..name.len()].copy_from_slice(name.as_bytes());
                echo_len = name.len();
            }
            if echo_len > 0 {
                // Echo at once, as if Twilio had played it, so on_mark is measured too.
                let name = std::str::from_utf8(&echo[..echo_len]).unwrap();
                assert!(matches!(player.on_mark(name), MarkOutcome::Played(_)));
                *marks += 1;
            }
        }
    };
    // Warm-up: the writer and mark-name buffers grow to their working size.
    for now in (0..200).step_by(20) {
        tick(now, &mut sent, &mut marks);
    }
    let n = allocations(|| {
        for now in (200..3000).step_by(20) {
            tick(now, &mut sent, &mut marks);
        }
    });
    assert_eq!(n, 0, "allocations on the outbound path");
    assert!(
        sent > 100 * 200 && marks >= 10,
        "frames ({sent} bytes) and marks ({marks}) went out while counted"
    );
}
