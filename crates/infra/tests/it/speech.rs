//! Speech adapters: espeak-ng speaks real audio; the OpenAI-compatible
//! adapter sends what the API expects and refuses answers that are not
//! what it asked for.

use carapace_clinical::speech::{AudioFormat, SpeechToText as _, TextToSpeech as _, audio, sniff};
use carapace_infra::outbound::{OutboundPolicy, SafeHttp};
use carapace_infra::speech::{LocalSpeech, OpenAiSpeech, OpenAiSpeechSettings};
use carapace_phi_crypto::Phi;
use carapace_testkit::receiver::{Answer, Receiver};
use carapace_testkit::voice::wav;

fn espeak_present(test: &str) -> bool {
    let found = std::process::Command::new("espeak-ng")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        carapace_testkit::skip(
            test,
            "espeak-ng is not installed (Debian package espeak-ng)",
        );
    }
    found
}

#[tokio::test]
async fn espeak_speaks_real_audio_of_a_plausible_length() {
    if !espeak_present("espeak_speaks_real_audio") {
        return;
    }
    let text = Phi::new("Your appointment is on Tuesday at nine in the morning.".to_owned());
    let spoken = LocalSpeech::default()
        .synthesize(&text)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spoken.format, AudioFormat::Wav);
    let bytes = spoken.bytes.expose_phi();
    let (_, millis) = sniff(bytes).unwrap_or_else(|| panic!("not a WAV"));
    assert!((1500..10_000).contains(&millis), "{millis} ms");
    assert!(
        bytes[44..].iter().filter(|b| **b != 0).count() > bytes.len() / 4,
        "not silence"
    );
    // The stand-in transcriber reads its length back.
    let heard = LocalSpeech::default()
        .transcribe(&spoken)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(heard.expose_phi().starts_with("(local transcription) "));
}

#[tokio::test]
async fn a_missing_or_broken_engine_is_a_provider_failure() {
    let text = Phi::new("hello".to_owned());
    assert!(
        LocalSpeech::with_program("/nonexistent/espeak-ng")
            .synthesize(&text)
            .await
            .is_err()
    );
    assert!(
        LocalSpeech::with_program("false")
            .synthesize(&text)
            .await
            .is_err()
    );
}

fn openai(receiver: &Receiver) -> OpenAiSpeech {
    OpenAiSpeech::new(
        SafeHttp::new(OutboundPolicy {
            https_only: false,
            allowed_hosts: vec!["127.0.0.1".into()],
            allow_loopback: true,
            timeout: std::time::Duration::from_secs(5),
            max_response_bytes: 10 * 1024 * 1024,
        }),
        OpenAiSpeechSettings {
            base_url: receiver.base.clone(),
            api_key: "sk-test-key".to_owned().into(),
            stt_model: "whisper-1".into(),
            tts_model: "tts-1".into(),
        },
    )
}

#[tokio::test]
async fn the_openai_adapter_speaks_the_audio_api() {
    let receiver = Receiver::start().await;
    let provider = openai(&receiver);
    let mut answer = Answer::ok();
    answer.body = br#"{"text": "I would like to cancel"}"#.to_vec();
    receiver.answer(answer);
    let sample = audio(wav(2)).unwrap_or_else(|e| panic!("{e}"));
    let heard = provider
        .transcribe(&sample)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(heard.expose_phi(), "I would like to cancel");
    let sent = receiver.received();
    assert_eq!(
        sent[0].line.split(' ').nth(1),
        Some("/v1/audio/transcriptions")
    );
    assert_eq!(sent[0].header("authorization"), Some("Bearer sk-test-key"));
    assert!(
        sent[0]
            .header("content-type")
            .is_some_and(|c| c.starts_with("multipart/form-data; boundary="))
    );
    let body = String::from_utf8_lossy(&sent[0].body);
    assert!(body.contains("name=\"model\"\r\n\r\nwhisper-1"));
    assert!(body.contains("filename=\"audio.wav\"\r\nContent-Type: audio/wav"));

    let mut answer = Answer::ok();
    answer.body = wav(1);
    receiver.answer(answer);
    let spoken = provider
        .synthesize(&Phi::new("See you on Tuesday".to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spoken.bytes.expose_phi(), &wav(1));
    let sent = receiver.received();
    let json: serde_json::Value =
        serde_json::from_slice(&sent[1].body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json["model"], "tts-1");
    assert_eq!(json["input"], "See you on Tuesday");

    // An answer that is not what was asked for is a failure, never passed on.
    let mut answer = Answer::ok();
    answer.body = b"<html>not audio</html>".to_vec();
    receiver.answer(answer);
    assert!(
        provider
            .synthesize(&Phi::new("hi".to_owned()))
            .await
            .is_err()
    );
    receiver.answer(Answer::status("503 Service Unavailable"));
    assert!(provider.transcribe(&sample).await.is_err());
}
