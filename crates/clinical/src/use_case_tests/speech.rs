//! Speech goes to a provider only under the assistant's agreements, and
//! only after its disclosure is recorded.

use std::sync::Mutex;

use carapace_audit::{Access, ActorKind, Origin};
use carapace_phi_crypto::Phi;
use carapace_tenancy::{OrgId, TenantContext};

use super::fakes::{FakeTrail, block_on, subject};
use crate::ClinicalError;
use crate::assistant::Availability;
use crate::speech::{
    Audio, AudioFormat, SpeechError, SpeechToText, TextToSpeech, audio, synthesize, transcribe,
};

#[derive(Default)]
struct Provider {
    sent: Mutex<u32>,
    down: bool,
}

impl SpeechToText for Provider {
    fn name(&self) -> String {
        "test:stt".into()
    }

    async fn transcribe(&self, _: &Audio) -> Result<Phi<String>, SpeechError> {
        *self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        if self.down {
            return Err(SpeechError::Unavailable("down".into()));
        }
        Ok(Phi::new("hello".into()))
    }
}

impl TextToSpeech for Provider {
    fn name(&self) -> String {
        "test:tts".into()
    }

    async fn synthesize(&self, _: &Phi<String>) -> Result<Audio, SpeechError> {
        *self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        audio(crate::speech::tests::wav_with(16_000, 16_000))
            .map_err(|_| SpeechError::Unavailable("bad".into()))
    }
}

fn access() -> Access {
    Access::new(
        TenantContext::new(OrgId::generate(), subject("clinician-ada")),
        ActorKind::User,
        Origin::default(),
    )
}

const ALL_SIGNED: Availability = Availability {
    deployment_enabled: true,
    deployment_baa: true,
    org_baa: true,
};

fn sample() -> Audio {
    audio(crate::speech::tests::wav_with(16_000, 32_000)).unwrap_or_else(|_| unreachable!())
}

#[test]
fn without_both_agreements_nothing_is_sent() {
    for gate in [
        Availability {
            deployment_enabled: false,
            ..ALL_SIGNED
        },
        Availability {
            deployment_baa: false,
            ..ALL_SIGNED
        },
        Availability {
            org_baa: false,
            ..ALL_SIGNED
        },
    ] {
        let (stt, trail) = (Provider::default(), FakeTrail::default());
        let said = block_on(transcribe(&stt, &trail, &access(), gate, &sample()));
        assert!(said.is_err());
        let spoken = block_on(synthesize(
            &stt,
            &trail,
            &access(),
            gate,
            &Phi::new("hi".into()),
        ));
        assert!(spoken.is_err());
        assert_eq!(
            *stt.sent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            0
        );
        assert!(
            trail
                .events
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_empty()
        );
    }
}

#[test]
fn each_use_records_its_disclosure_first() {
    let (stt, trail) = (Provider::default(), FakeTrail::default());
    let said = block_on(transcribe(&stt, &trail, &access(), ALL_SIGNED, &sample()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(said.expose_phi(), "hello");
    let spoken = block_on(synthesize(
        &stt,
        &trail,
        &access(),
        ALL_SIGNED,
        &Phi::new("hi".into()),
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spoken.format, AudioFormat::Wav);
    let events = trail
        .events
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["speech.transcribe", "speech.synthesize"]);
    assert!(
        events[0]
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("test:stt")
    );
}

#[test]
fn a_provider_that_fails_is_a_503_not_a_transcript() {
    let (stt, trail) = (
        Provider {
            down: true,
            ..Provider::default()
        },
        FakeTrail::default(),
    );
    let said = block_on(transcribe(&stt, &trail, &access(), ALL_SIGNED, &sample()));
    assert!(matches!(
        said,
        Err(ClinicalError::Unavailable {
            code: "speech_unavailable",
            ..
        })
    ));
}
