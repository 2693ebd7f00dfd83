//! G.711 μ-law (PCMU) encode and decode, bit-exact with the Reese/Campbell
//! reference (BIAS 0x84, CLIP 32635).
//!
//! Decoding is a 256-entry table built at compile time; encoding is a few
//! integer operations. Neither allocates, so both are safe on the per-frame path.

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

/// μ-law silence (positive zero).
pub const SILENCE: u8 = 0xFF;

/// Decode table: `DECODE[code]` is the linear sample.
pub static DECODE: [i16; 256] = build_decode_table();

const fn build_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = decode_formula(i as u8);
        i += 1;
    }
    table
}

const fn decode_formula(code: u8) -> i16 {
    let u = !code as i32 & 0xFF;
    let exponent = (u >> 4) & 0x07;
    let mantissa = u & 0x0F;
    let t = ((mantissa << 3) + BIAS) << exponent;
    (if u & 0x80 != 0 { BIAS - t } else { t - BIAS }) as i16
}

/// Encode one 16-bit linear sample.
#[inline]
pub fn encode(sample: i16) -> u8 {
    let s = sample as i32;
    let sign = if s < 0 { 0x80 } else { 0x00 };
    let magnitude = s.unsigned_abs().min(CLIP as u32) as i32 + BIAS;
    // Highest set bit among bits 7..14 gives the segment (0..=7).
    let exponent = (31 - magnitude.leading_zeros() as i32 - 7).max(0);
    let mantissa = (magnitude >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// Decode one μ-law byte.
#[inline]
pub fn decode(code: u8) -> i16 {
    DECODE[code as usize]
}

/// Decode `input` into `output` (one sample per byte). Returns the number of
/// samples written: `min(input.len(), output.len())`.
#[inline]
pub fn decode_into(input: &[u8], output: &mut [i16]) -> usize {
    let n = input.len().min(output.len());
    for (o, &c) in output[..n].iter_mut().zip(&input[..n]) {
        *o = DECODE[c as usize];
    }
    n
}

/// Encode `input` into `output` (one byte per sample). Returns the number of
/// bytes written: `min(input.len(), output.len())`.
#[inline]
pub fn encode_into(input: &[i16], output: &mut [u8]) -> usize {
    let n = input.len().min(output.len());
    for (o, &s) in output[..n].iter_mut().zip(&input[..n]) {
        *o = encode(s);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The segment-search form of the reference encoder, written independently
    /// of `encode` so the exhaustive test compares two algorithms.
    fn reference_encode(s: i16) -> u8 {
        const SEG_END: [i32; 8] = [0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF];
        let mut m = s as i32;
        let mask = if m < 0 {
            m = -m;
            0x7F
        } else {
            0xFF
        };
        if m > CLIP {
            m = CLIP;
        }
        m += BIAS;
        let seg = SEG_END.iter().position(|&end| m <= end).unwrap_or(8) as i32;
        if seg >= 8 {
            return (0x7F ^ mask) as u8;
        }
        let uval = (seg << 4) | ((m >> (seg + 3)) & 0x0F);
        (uval ^ mask) as u8
    }

    #[test]
    fn encode_vectors() {
        let vectors: [(i16, u8); 16] = [
            (0, 0xFF),
            (1, 0xFF),
            (-1, 0x7F),
            (8, 0xFE),
            (-8, 0x7E),
            (100, 0xF2),
            (-100, 0x72),
            (1000, 0xCE),
            (-1000, 0x4E),
            (4000, 0xAF),
            (8000, 0xA0),
            (-8000, 0x20),
            (16000, 0x90),
            (32124, 0x80),
            (32767, 0x80),
            (-32768, 0x00),
        ];
        for (s, code) in vectors {
            assert_eq!(encode(s), code, "encode({s})");
        }
    }

    #[test]
    fn decode_vectors() {
        let vectors: [(u8, i16); 10] = [
            (0x00, -32124),
            (0x0F, -16764),
            (0x70, -120),
            (0x7E, -8),
            (0x7F, 0),
            (0x80, 32124),
            (0x8F, 16764),
            (0xF0, 120),
            (0xFE, 8),
            (0xFF, 0),
        ];
        for (code, s) in vectors {
            assert_eq!(decode(code), s, "decode({code:#04x})");
        }
        assert_eq!(decode(encode(100)), 104);
        assert_eq!(decode(encode(1000)), 988);
        assert_eq!(decode(encode(8000)), 7932);
    }

    #[test]
    fn exhaustive_encode_matches_reference() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(encode(s), reference_encode(s), "sample {s}");
        }
    }

    #[test]
    fn exhaustive_decode_is_stable_under_reencode() {
        for code in 0..=255u8 {
            assert_eq!(decode(code), decode_formula(code));
            // Every code decodes to a value that encodes back to the same code,
            // except negative zero (0x7F), which encodes as positive zero.
            let back = encode(decode(code));
            if code == 0x7F {
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, code, "code {code:#04x}");
            }
        }
    }

    #[test]
    fn slices_stop_at_the_shorter_side() {
        let pcm = [0i16, 1000, -1000, 8000];
        let mut codes = [0u8; 3];
        assert_eq!(encode_into(&pcm, &mut codes), 3);
        assert_eq!(codes, [0xFF, 0xCE, 0x4E]);
        let mut back = [0i16; 8];
        assert_eq!(decode_into(&codes, &mut back), 3);
        assert_eq!(&back[..3], &[0, 988, -988]);
    }
}
