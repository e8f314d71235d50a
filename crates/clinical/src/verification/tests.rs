use super::*;
use crate::patient::{Demographics, Patient, PatientInput};

fn patient() -> Patient {
    let demographics: Demographics = PatientInput {
        given_name: "Jane".into(),
        family_name: "Roe".into(),
        birth_date: "1980-02-03".into(),
        member_id: Some("M-778".into()),
        phone: Some("+1 555 010 0100".into()),
        email: Some("jane@example.org".into()),
        sex: None,
    }
    .parse(time::macros::date!(2026 - 01 - 01))
    .unwrap_or_else(|e| panic!("{e:?}"));
    Patient {
        id: PatientId::generate(),
        org: carapace_tenancy::OrgId::generate(),
        demographics,
        created_at: OffsetDateTime::UNIX_EPOCH,
        updated_at: OffsetDateTime::UNIX_EPOCH,
    }
}

fn input() -> TaskInput {
    TaskInput {
        patient_id: uuid::Uuid::nil(),
        payer_name: "Acme Health".into(),
        payer_phone: "+1 800 555 0199".into(),
        plan: "Gold PPO".into(),
        procedure_codes: vec!["99213".into(), "j3490".into()],
    }
}

#[test]
fn tasks_move_only_along_the_state_machine() {
    use TaskStatus::*;
    let allowed = [
        (Pending, Claimed),
        (Pending, Cancelled),
        (Claimed, Calling),
        (Claimed, Failed),
        (Claimed, Cancelled),
        (Calling, Completed),
        (Calling, Failed),
    ];
    for from in TaskStatus::ALL {
        for to in TaskStatus::ALL {
            assert_eq!(
                from.may_become(to),
                allowed.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
    }
    assert_eq!(
        check_transition(Completed, Calling).err().map(|e| e.code()),
        Some("invalid_transition")
    );
}

#[test]
fn task_input_is_checked_field_by_field() {
    let ok = input().parse().unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(
        ok.procedure_codes.expose_phi(),
        &vec!["99213".to_owned(), "J3490".to_owned()]
    );
    let bad = TaskInput {
        payer_name: String::new(),
        payer_phone: "call me".into(),
        plan: "x".repeat(201),
        procedure_codes: vec!["<script>".into()],
        ..input()
    };
    match bad.parse() {
        Err(ClinicalError::Invalid(e)) => assert_eq!(
            e.into_iter().map(|e| e.field).collect::<Vec<_>>(),
            vec!["payer_name", "payer_phone", "plan", "procedure_codes"]
        ),
        other => panic!("{other:?}"),
    }
    assert!(reference_number("REF-2026.11_7").is_ok());
    assert!(reference_number("no spaces please").is_err());
    assert!(transcript_chunk(String::new()).is_err());
    assert!(transcript_chunk("x".repeat(limits::CHUNK_MAX + 1)).is_err());
}

#[test]
fn the_bot_view_holds_exactly_what_verifying_needs() {
    let p = patient();
    let task = Task {
        id: TaskId::generate(),
        request: input().parse().unwrap_or_else(|e| panic!("{e:?}")),
        status: TaskStatus::Claimed,
        claimed_by: None,
        reference_number: None,
        transcript_chunks: 0,
        created_by: SubjectId::parse("staff").unwrap_or_else(|_| unreachable!()),
        created_at: OffsetDateTime::UNIX_EPOCH,
        updated_at: OffsetDateTime::UNIX_EPOCH,
    };
    let BotView {
        task_id,
        status,
        patient_name,
        birth_date,
        member_id,
        payer_name,
        payer_phone,
        plan,
        procedure_codes,
        supervisor_phone,
    } = bot_view(&task, &p, None);
    assert_eq!(task_id, task.id);
    assert_eq!(status, TaskStatus::Claimed);
    assert_eq!(patient_name.expose_phi(), "Jane Roe");
    assert_eq!(birth_date, p.demographics.birth_date);
    assert_eq!(
        member_id.map(|m| m.expose_phi().clone()),
        Some("M-778".into())
    );
    assert_eq!(payer_name.expose_phi(), "Acme Health");
    assert_eq!(payer_phone.expose_phi(), "+1 800 555 0199");
    assert_eq!(plan.expose_phi(), "Gold PPO");
    assert_eq!(procedure_codes.expose_phi().len(), 2);
    assert_eq!(supervisor_phone, None);
    assert_eq!(BOT_VIEW_FIELDS.len(), 7, "one name per field above");
    let printed = format!("{:?}", bot_view(&task, &p, None));
    for secret in ["Jane", "555", "M-778", "jane@", "Acme"] {
        assert!(!printed.contains(secret), "{printed}");
    }
}

#[test]
fn the_supervisor_is_offered_only_while_escalating_is_allowed() {
    let p = patient();
    let supervisor = supervisor_phone(" +1 (617) 555-0123 ").unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(supervisor.expose_phi(), "+1 (617) 555-0123");
    for status in TaskStatus::ALL {
        let task = Task {
            id: TaskId::generate(),
            request: input().parse().unwrap_or_else(|e| panic!("{e:?}")),
            status,
            claimed_by: None,
            reference_number: None,
            transcript_chunks: 0,
            created_by: SubjectId::parse("staff").unwrap_or_else(|_| unreachable!()),
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        };
        let view = bot_view(&task, &p, Some(&supervisor));
        assert_eq!(
            view.supervisor_phone.is_some(),
            status == TaskStatus::Calling,
            "{status}"
        );
        assert_eq!(may_escalate(status), status == TaskStatus::Calling);
        assert!(!format!("{view:?}").contains("0123"));
    }
    for bad in [
        "",
        "call me",
        "12345",
        "+1 617 555 0123 4567 8901",
        "617\n5550123",
    ] {
        match supervisor_phone(bad) {
            Err(ClinicalError::Invalid(errors)) => {
                assert_eq!(errors[0].field, "supervisor_phone", "{bad:?}");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}
