//! PHI at rest: nothing readable in the database, ciphertexts bound to their
//! place, blind-index search exact, crypto-shredding final.

use carapace_clinical::patient::{PatientInput, PatientQuery, PatientRepository, Visibility};
use carapace_infra::{Database, SeaPatients};
use carapace_phi_crypto::Phi;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use time::macros::date;

use crate::support::{acc, keys, new_org, sqlite};

mod key_lifecycle;

const MARKERS: [&str; 12] = [
    "Zephyrine",
    "Quillfeather",
    "MBR-4242-XYZZY",
    "marker.mail@example.org",
    "+1 555 867 5309",
    "Vexillary tremor since the new dose",
    "Zolpiquantrine",
    "Glimmering tinnitus",
    "Platinum Quokka Plan",
    "Agent said reference Xylophant-9",
    "Quixotic assistant chatter",
    "+1 617 555 0123",
];

/// Books an appointment for `patient` whose reason is a marker, records a
/// medication and a side effect named by markers, and a verification task
/// whose plan and transcript are markers, so the dumps cover appointment,
/// medication and call PHI too (each read back, so the writes happened).
async fn marked_appointment(
    db: &Database,
    ctx: &carapace_tenancy::TenantContext,
    patient: carapace_clinical::patient::PatientId,
) {
    use carapace_clinical::appointment::{AppointmentInput, AppointmentRepository, BookingRules};
    use time::format_description::well_known::Rfc3339;
    let start = time::OffsetDateTime::now_utc() + time::Duration::days(2);
    let new = AppointmentInput {
        patient_id: patient.as_uuid(),
        practitioner: "dr-marker".into(),
        start: start.format(&Rfc3339).unwrap_or_default(),
        end: (start + time::Duration::minutes(30))
            .format(&Rfc3339)
            .unwrap_or_default(),
        time_zone: "UTC".into(),
        reason: Some(MARKERS[5].into()),
    }
    .parse(&BookingRules::default(), time::OffsetDateTime::now_utc())
    .unwrap_or_else(|e| panic!("{e:?}"));
    let repo = carapace_infra::SeaAppointments::new(db.clone(), keys(db));
    let booked = repo
        .book(&acc(ctx), &new, &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let read = repo
        .get(&acc(ctx), booked.id)
        .await
        .ok()
        .flatten()
        .and_then(|a| a.reason);
    assert_eq!(
        read.as_ref().map(|r| r.expose_phi().as_str()),
        Some(MARKERS[5])
    );

    use carapace_clinical::medication::{MedicationInput, MedicationRepository, SideEffectInput};
    let meds = carapace_infra::SeaMedications::new(db.clone(), keys(db));
    let today = time::OffsetDateTime::now_utc().date();
    let med = MedicationInput {
        drug_name: MARKERS[6].into(),
        dose: "10 mg".into(),
        schedule: "once daily".into(),
        started_on: "2026-01-02".into(),
        stopped_on: None,
    }
    .parse(today)
    .unwrap_or_else(|e| panic!("{e:?}"));
    let effect = SideEffectInput {
        symptom: MARKERS[7].into(),
        severity: "severe".into(),
        onset_on: "2026-01-05".into(),
    }
    .parse(today)
    .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        meds.add_medication(&acc(ctx), patient, &med)
            .await
            .ok()
            .flatten()
            .is_some()
    );
    assert!(
        meds.add_side_effect(&acc(ctx), patient, &effect)
            .await
            .ok()
            .flatten()
            .is_some()
    );
    let (m, e) = meds
        .history(&acc(ctx), patient)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    assert_eq!(
        m.first().map(|m| m.details.drug_name.expose_phi().as_str()),
        Some(MARKERS[6])
    );
    assert_eq!(
        e.first().map(|e| e.details.symptom.expose_phi().as_str()),
        Some(MARKERS[7])
    );

    use carapace_clinical::verification::{
        Progress, TaskInput, VerificationRepository, transcript_chunk,
    };
    let tasks = carapace_infra::SeaVerifications::new(db.clone(), keys(db));
    let request = TaskInput {
        patient_id: patient.as_uuid(),
        payer_name: "Acme Health".into(),
        payer_phone: "+1 800 555 0199".into(),
        plan: MARKERS[8].into(),
        procedure_codes: vec!["99213".into()],
    }
    .parse()
    .unwrap_or_else(|e| panic!("{e:?}"));
    let task = tasks
        .create(&acc(ctx), &request)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("task"));
    assert!(
        tasks
            .claim(&acc(ctx), task.id)
            .await
            .ok()
            .flatten()
            .is_some()
    );
    let calling = tasks.report(&acc(ctx), task.id, &Progress::Calling).await;
    assert!(calling.ok().flatten().is_some());
    let chunk = transcript_chunk(MARKERS[9].into()).unwrap_or_else(|e| panic!("{e:?}"));
    let stored = tasks.append_transcript(&acc(ctx), task.id, 0, &chunk).await;
    assert_eq!(stored.ok().flatten(), Some(1));
    let read = tasks.transcript(&acc(ctx), task.id).await.ok().flatten();
    assert_eq!(
        read.as_ref().map(|t| t.expose_phi().as_str()),
        Some(MARKERS[9])
    );
    use carapace_clinical::assistant::{AssistantRepository, Speaker};
    let chat = carapace_infra::assistant::SeaAssistant::new(db.clone(), keys(db));
    let turn = (
        Speaker::User,
        carapace_phi_crypto::Phi::new(MARKERS[10].to_owned()),
    );
    chat.append(&acc(ctx), None, &[turn])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let said = chat.history(&acc(ctx), None, 5).await.unwrap_or_default();
    assert_eq!(
        said.first().map(|(_, t)| t.expose_phi().as_str()),
        Some(MARKERS[10])
    );
    // The organization's supervisor number, offered to the calling bot.
    let supervisor = carapace_clinical::verification::supervisor_phone(MARKERS[11])
        .unwrap_or_else(|e| panic!("{e:?}"));
    tasks
        .set_supervisor_phone(&acc(ctx), Some(&supervisor))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let view = tasks.bot_view(&acc(ctx), task.id).await.ok().flatten();
    assert_eq!(
        view.and_then(|v| v.supervisor_phone)
            .map(|p| p.expose_phi().clone()),
        Some(MARKERS[11].to_owned())
    );
    let back = tasks.get(&acc(ctx), task.id).await.ok().flatten();
    assert_eq!(
        back.map(|t| t.request.plan.expose_phi().clone()),
        Some(MARKERS[8].to_owned())
    );
    // Telephony: the account's token, a call's recording, a voicemail.
    use carapace_clinical::appointment::ivr::CallingHours;
    use carapace_clinical::telephony::voicemail::{Message, VoicemailRepository as _};
    use carapace_clinical::telephony::{
        CallRecord, CallRepository as _, CallState, Delivery, ProviderSid, TelephonyAccount,
    };
    let sid = |s: &str| ProviderSid::parse(s).unwrap_or_else(|| panic!("{s}"));
    let calls = carapace_infra::calls::SeaCalls::new(db.clone(), keys(db));
    let account = TelephonyAccount {
        account_sid: sid("ACmarked"),
        auth_token: "marked-auth-token-0123456789".to_owned().into(),
        caller_number: "+16175550100".into(),
        bot_stream_url: "wss://bot.example/media".into(),
        front_desk_number: None,
        calling_hours: CallingHours::DEFAULT,
    };
    calls
        .set_account(&acc(ctx), &account)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let slot = calls
        .reserve_call(ctx, task.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    calls
        .record_call(&acc(ctx), task.id, &slot, &sid("CAmarked"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let call = CallRecord {
        sid: sid("CAmarked"),
        task: task.id,
        state: CallState::InProgress,
    };
    let recording = Message {
        recording: sid("REmarked"),
        duration_secs: 3,
        audio: Phi::new(MARKERS[5].as_bytes().to_vec()),
        transcript: Some(Phi::new(MARKERS[10].to_owned())),
    };
    let stored = calls.store_recording(&acc(ctx), &call, &recording).await;
    assert_eq!(
        stored.unwrap_or_else(|e| panic!("{e}")),
        Delivery::Processed
    );
    let voicemails = carapace_infra::voicemail::SeaVoicemails::new(db.clone(), keys(db));
    let caller = Phi::new(MARKERS[11].to_owned());
    let opened = voicemails
        .open(&acc(ctx), &sid("CAvmmarked"), &caller)
        .await;
    assert_eq!(
        opened.unwrap_or_else(|e| panic!("{e}")),
        Delivery::Processed
    );
    let message = Message {
        recording: sid("REvmmarked"),
        duration_secs: 2,
        audio: Phi::new(MARKERS[7].as_bytes().to_vec()),
        transcript: Some(Phi::new(MARKERS[9].to_owned())),
    };
    let left = voicemails
        .attach(&acc(ctx), &sid("CAvmmarked"), &message)
        .await;
    assert_eq!(left.unwrap_or_else(|e| panic!("{e}")), Delivery::Processed);

    // A bulk export whose NDJSON holds a marker (sealed at rest).
    use carapace_auth::smart::ResourceType;
    use carapace_clinical::export::{ExportFile, ExportRepository as _, NewExport};
    let exports = carapace_infra::exports::SeaExports::new(db.clone(), keys(db));
    let now = time::OffsetDateTime::now_utc();
    let started = exports
        .create(
            &acc(ctx),
            &NewExport {
                request_url: "https://h/fhir/R4/Patient/$export".into(),
                types: vec![ResourceType::Patient],
                since: None,
                expires_at: now + time::Duration::hours(1),
                started_at: now,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let line = format!(
        "{{\"resourceType\":\"Patient\",\"name\":[{{\"family\":\"{}\"}}]}}\n",
        MARKERS[1]
    );
    let file = ExportFile {
        n: 1,
        resource_type: ResourceType::Patient,
        count: 1,
    };
    exports
        .add_file(ctx, started, &file, line.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        exports
            .finish(
                ctx,
                started,
                carapace_clinical::export::ExportStatus::Complete,
                None
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    let back = exports.file(&acc(ctx), started, 1, now).await;
    assert_eq!(
        back.unwrap_or_else(|e| panic!("{e}")),
        Some(line.into_bytes())
    );
}

fn marked() -> carapace_clinical::patient::Demographics {
    PatientInput {
        given_name: MARKERS[0].into(),
        family_name: MARKERS[1].into(),
        birth_date: "1977-07-07".into(),
        member_id: Some(MARKERS[2].into()),
        phone: Some(MARKERS[4].into()),
        email: Some(MARKERS[3].into()),
        sex: None,
    }
    .parse(date!(2026 - 01 - 01))
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn all_orgs() -> PatientQuery {
    PatientQuery {
        visibility: Visibility::Organization,
        ..PatientQuery::default()
    }
}

#[tokio::test]
async fn sqlite_file_holds_no_readable_phi() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    marked_appointment(&db, &ctx, p.id).await;
    assert_eq!(
        repo.get(&acc(&ctx), p.id)
            .await
            .ok()
            .flatten()
            .map(|p| p.demographics),
        Some(marked())
    );
    db.close().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
    {
        bytes.extend(std::fs::read(entry.path()).unwrap_or_default());
    }
    assert!(bytes.len() > 1000, "the database files were read");
    let text = String::from_utf8_lossy(&bytes);
    for marker in MARKERS.iter().chain(["1977-07-07", "2026-01-05"].iter()) {
        assert!(!text.contains(marker), "{marker} found in the SQLite files");
    }
}

#[tokio::test]
async fn postgres_dump_holds_no_readable_phi() {
    let Some(pg) = carapace_testkit::postgres("postgres_dump_holds_no_readable_phi").await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    marked_appointment(&db, &ctx, p.id).await;
    // Every row of every table, as the owner (no RLS in the way).
    let owner = sea_orm::Database::connect(pg.owner_url.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tables = owner
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT tablename::text AS t FROM pg_tables WHERE schemaname = current_schema()",
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut dump = String::new();
    for t in tables {
        let table: String = t.try_get("", "t").unwrap_or_default();
        let rows = owner
            .query_all_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT row_to_json(x)::text AS j FROM {table} x"),
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for r in rows {
            dump.push_str(&r.try_get::<String>("", "j").unwrap_or_default());
        }
    }
    assert!(
        dump.contains(&ctx.org().to_string()),
        "the dump covers our rows"
    );
    for marker in MARKERS.iter().chain(["1977-07-07", "2026-01-05"].iter()) {
        assert!(
            !dump.contains(marker),
            "{marker} found in the PostgreSQL dump"
        );
    }
}

#[tokio::test]
async fn ciphertext_moved_to_another_row_or_column_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let a = repo
        .create(&acc(&ctx), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let b = repo
        .create(&acc(&ctx), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let raw = sea_orm::Database::connect(format!("sqlite://{}/carapace.db", dir.path().display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let exec = |sql: String| {
        let raw = raw.clone();
        async move {
            raw.execute_unprepared(&sql)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    let hex = |id: uuid::Uuid| id.simple().to_string();
    // Row swap: A's given name into B.
    exec(format!(
        "UPDATE patients SET given_name = (SELECT given_name FROM patients WHERE id = x'{}') WHERE id = x'{}'",
        hex(a.id.as_uuid()),
        hex(b.id.as_uuid())
    ))
    .await;
    assert!(
        repo.get(&acc(&ctx), b.id).await.is_err(),
        "a row-swapped value is an error, never A's data"
    );
    // Column swap within A: family name into given name.
    exec(format!(
        "UPDATE patients SET given_name = family_name WHERE id = x'{}'",
        hex(a.id.as_uuid())
    ))
    .await;
    assert!(
        repo.get(&acc(&ctx), a.id).await.is_err(),
        "a column-swapped value is an error"
    );
    // A listing containing them fails as a whole rather than skipping.
    assert!(repo.list(&acc(&ctx), &all_orgs()).await.is_err());
}

#[tokio::test]
async fn member_id_search_is_exact_and_per_org() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let a = new_org(&db).await;
    let b = new_org(&db).await;
    let p = repo
        .create(&acc(&a), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    repo.create(&acc(&b), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let find = |org, m: &str| {
        let q = PatientQuery {
            member_id: Some(Phi::new(m.to_owned())),
            ..all_orgs()
        };
        let repo = repo.clone();
        async move {
            repo.list(&acc(org), &q)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .items
                .iter()
                .map(|p| p.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(find(&a, "MBR-4242-XYZZY").await, vec![p.id]);
    assert_eq!(
        find(&a, " mbr-4242-xyzzy ").await,
        vec![p.id],
        "normalised: case and outer space"
    );
    assert!(find(&a, "MBR-4242").await.is_empty(), "no prefix match");
    assert!(find(&a, "MBR-4242-XYZZY1").await.is_empty());
    assert_eq!(
        find(&b, "MBR-4242-XYZZY").await.len(),
        1,
        "B finds its own only"
    );
}

#[tokio::test]
async fn crypto_shredding_makes_an_orgs_data_unrecoverable() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let ring = keys(&db);
    let repo = SeaPatients::new(db.clone(), ring.clone());
    let gone = new_org(&db).await;
    let kept = new_org(&db).await;
    let p = repo
        .create(&acc(&gone), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let q = repo
        .create(&acc(&kept), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ring.shred(&gone).await.unwrap_or_else(|e| panic!("{e}")), 1);
    // Neither this process nor a fresh one (no cache) can read it again.
    assert!(repo.get(&acc(&gone), p.id).await.is_err());
    let fresh = SeaPatients::new(db.clone(), keys(&db));
    assert!(fresh.get(&acc(&gone), p.id).await.is_err());
    assert!(
        fresh
            .get(&acc(&kept), q.id)
            .await
            .is_ok_and(|p| p.is_some()),
        "other orgs are untouched"
    );
}

#[cfg(feature = "kms")]
mod kms;

#[tokio::test]
async fn break_glass_reasons_are_stored_encrypted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let reason = Phi::new("Zephyrine collapsed in the waiting room".to_owned());
    let subject =
        carapace_tenancy::SubjectId::parse("clinician-bob").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        repo.break_glass(
            &acc(&ctx),
            p.id,
            &subject,
            &reason,
            time::OffsetDateTime::now_utc() + time::Duration::hours(1)
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    );
    let bytes = std::fs::read(dir.path().join("carapace.db")).unwrap_or_default();
    let wal = std::fs::read(dir.path().join("carapace.db-wal")).unwrap_or_default();
    for file in [&bytes, &wal] {
        assert!(
            !file.windows(10).any(|w| w == b"collapsed "),
            "the reason is not stored in the clear"
        );
    }
}
