//! The assistant's use cases against in-memory ports: nothing leaves
//! before the disclosure is recorded, and no other patient's conversation
//! or identifiers are reached.

use std::sync::Mutex;

use carapace_audit::Access;
use carapace_auth::Role;
use carapace_phi_crypto::Phi;
use carapace_tenancy::{OrgId, OrgSettings};

use super::fakes::{FakeEvents, FakePatients, FakeTrail, NOW, block_on, caller, lock, principal};
use crate::ClinicalError;
use crate::assistant::{AiError, AiProvider, AssistantRepository, Conversations, Speaker};
use crate::patient::PatientId;

/// A provider that answers with what it was sent, and remembers it.
#[derive(Default)]
struct Echo {
    sent: Mutex<Vec<String>>,
    down: bool,
}

impl AiProvider for &Echo {
    fn name(&self) -> String {
        "echo".into()
    }

    async fn complete(&self, _: &str, turns: &[(Speaker, String)]) -> Result<String, AiError> {
        if self.down {
            return Err(AiError::Unavailable("down".into()));
        }
        let last = turns.last().map(|t| t.1.clone()).unwrap_or_default();
        lock(&self.sent).push(last.clone());
        Ok(last)
    }
}

/// Conversations: the turns appended, by patient context.
#[derive(Default)]
struct Turns {
    appended: Mutex<Vec<(Option<PatientId>, usize)>>,
}

impl AssistantRepository for Turns {
    async fn history(
        &self,
        _: &Access,
        _: Option<PatientId>,
        _: u64,
    ) -> Result<Vec<(Speaker, Phi<String>)>, ClinicalError> {
        Ok(Vec::new())
    }

    async fn append(
        &self,
        _: &Access,
        patient: Option<PatientId>,
        turns: &[(Speaker, Phi<String>)],
    ) -> Result<(), ClinicalError> {
        lock(&self.appended).push((patient, turns.len()));
        Ok(())
    }
}

#[derive(Default)]
struct World {
    patients: FakePatients,
    trail: FakeTrail,
    events: FakeEvents,
    turns: Turns,
    echo: Echo,
}

impl World {
    fn assistant(&self, baa: bool) -> Conversations<'_, FakePatients, FakeTrail, Turns, &Echo> {
        Conversations {
            patients: &self.patients,
            trail: &self.trail,
            events: &self.events,
            conversations: &self.turns,
            ai: Some(&self.echo),
            deployment_baa: baa,
        }
    }
}

fn baa() -> OrgSettings {
    OrgSettings {
        ai_baa: true,
        ..OrgSettings::default()
    }
}

#[test]
fn a_message_about_a_patient_is_disclosed_first_and_sent_redacted() {
    let w = World::default();
    let org = OrgId::generate();
    let id = w.patients.add(org);
    w.patients.join(id, "dr-ada");
    let ada = principal("dr-ada", org, &[Role::Clinician]);
    let answer = block_on(w.assistant(true).send(
        &caller(&ada, baa()),
        Some(id),
        "Does Jane Roe need a dose change?",
        NOW,
    ));
    assert_eq!(
        answer.ok().as_deref(),
        Some("Does Jane Roe need a dose change?"),
        "identifiers are put back in the answer"
    );
    let sent = lock(&w.echo.sent);
    assert!(
        !sent[0].contains("Jane") && !sent[0].contains("Roe"),
        "{sent:?}"
    );
    let trail = lock(&w.trail.events);
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].action, "patient.disclosed");
    assert_eq!(*lock(&w.turns.appended), vec![(Some(id), 2)]);
}

#[test]
fn nothing_is_sent_without_both_agreements_or_about_an_unreached_patient() {
    let w = World::default();
    let org = OrgId::generate();
    let id = w.patients.add(org);
    let foreign = w.patients.add(OrgId::generate());
    let eve = principal("dr-eve", org, &[Role::Clinician]);
    let send = |baa_signed, settings, patient| {
        block_on(
            w.assistant(baa_signed)
                .send(&caller(&eve, settings), patient, "hello there", NOW),
        )
    };
    assert_eq!(
        send(false, baa(), None).err().map(|e| e.code()),
        Some("deployment_baa_missing")
    );
    assert_eq!(
        send(true, OrgSettings::default(), None)
            .err()
            .map(|e| e.code()),
        Some("org_baa_missing")
    );
    assert!(matches!(
        send(true, baa(), Some(id)),
        Err(ClinicalError::Denied(_))
    ));
    assert!(matches!(
        send(true, baa(), Some(foreign)),
        Err(ClinicalError::NotFound)
    ));
    assert!(lock(&w.echo.sent).is_empty());
    assert!(lock(&w.turns.appended).is_empty());
}

#[test]
fn a_provider_failure_is_unavailable_and_stores_nothing() {
    let w = World {
        echo: Echo {
            down: true,
            ..Echo::default()
        },
        ..World::default()
    };
    let ada = principal("dr-ada", OrgId::generate(), &[Role::Clinician]);
    let answer = block_on(
        w.assistant(true)
            .send(&caller(&ada, baa()), None, "hello there", NOW),
    );
    assert_eq!(answer.err().map(|e| e.code()), Some("ai_unavailable"));
    assert!(lock(&w.turns.appended).is_empty());
}
