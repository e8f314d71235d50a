use super::*;

/// A PCM WAV header for `data` bytes at `byte_rate`, then the data.
pub(crate) fn wav_with(byte_rate: u32, data: usize) -> Vec<u8> {
    let size = u32::try_from(data).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + size).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&(byte_rate / 2).to_le_bytes());
    out.extend_from_slice(&byte_rate.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&size.to_le_bytes());
    out.resize(out.len() + data, 0);
    out
}

#[test]
fn a_wav_is_recognised_by_its_bytes_with_its_length() {
    assert_eq!(
        sniff(&wav_with(16_000, 48_000)),
        Some((AudioFormat::Wav, 3000))
    );
    // Other chunks before the data are skipped.
    let mut with_list = wav_with(16_000, 16_000);
    let list = [b"LIST".as_slice(), &3u32.to_le_bytes(), b"abc\0"].concat();
    with_list.splice(36..36, list);
    assert_eq!(sniff(&with_list), Some((AudioFormat::Wav, 1000)));
}

#[test]
fn what_only_claims_to_be_audio_is_refused() {
    let good = wav_with(16_000, 16_000);
    let mut not_pcm = good.clone();
    not_pcm[20] = 3; // IEEE float
    let mut lying_size = good.clone();
    lying_size[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut zero_rate = good.clone();
    zero_rate[28..32].copy_from_slice(&0u32.to_le_bytes());
    for (what, bytes) in [
        ("empty", Vec::new()),
        ("text", b"RIFF but not really a wave file".to_vec()),
        (
            "png",
            b"\x89PNG\r\n\x1a\n0000000000000000000000000".to_vec(),
        ),
        ("truncated", good[..30].to_vec()),
        ("not pcm", not_pcm),
        ("data larger than the file", lying_size),
        ("no byte rate", zero_rate),
    ] {
        assert_eq!(sniff(&bytes), None, "{what}");
        assert!(
            matches!(
                audio(bytes),
                Err(ClinicalError::Refused {
                    code: "unsupported_audio",
                    ..
                })
            ),
            "{what}"
        );
    }
}

#[test]
fn audio_is_bounded_in_length() {
    assert!(audio(wav_with(16_000, 16_000 * 300)).is_ok());
    assert!(matches!(
        audio(wav_with(16_000, 16_000 * 301)),
        Err(ClinicalError::Invalid(_))
    ));
    assert!(matches!(
        audio(wav_with(16_000, 0)),
        Err(ClinicalError::Invalid(_))
    ));
}

#[test]
fn text_to_speak_is_bounded() {
    assert!(speech_text("Your appointment is on Tuesday.").is_ok());
    for bad in ["", "   ", &"a".repeat(1001), "bell\u{7}"] {
        assert!(speech_text(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn debug_shows_no_audio() {
    let a = audio(wav_with(16_000, 16_000)).unwrap_or_else(|_| unreachable!());
    let shown = format!("{a:?}");
    assert!(shown.contains("Wav") && !shown.contains("RIFF"), "{shown}");
}
