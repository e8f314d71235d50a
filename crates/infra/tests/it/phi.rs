//! PHI at rest: nothing readable in the database, ciphertexts bound to their
//! place, blind-index search exact, crypto-shredding final.

use carapace_clinical::patient::{PatientInput, PatientQuery, PatientRepository, Visibility};
use carapace_infra::{Database, SeaPatients};
use carapace_phi_crypto::Phi;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use time::macros::date;

use crate::support::{acc, keys, new_org, sqlite};

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

/// `carapace org delete`: the organization stops resolving, its keys are
/// destroyed, and no new key (so no new data) can be made for it.
async fn org_deletion(db: Database) {
    use carapace_tenancy::OrganizationRepository as _;
    let ring = keys(&db);
    let repo = SeaPatients::new(db.clone(), ring.clone());
    let orgs = carapace_infra::SeaOrganizations::new(db.clone());
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
    assert!(
        orgs.mark_deleted(&gone)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert_eq!(ring.shred(&gone).await.unwrap_or_else(|e| panic!("{e}")), 1);

    assert!(
        orgs.find_by_id(gone.org())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none(),
        "a deleted organization no longer resolves"
    );
    assert!(
        !carapace_infra::all_org_ids(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .contains(&gone.org()),
        "maintenance commands skip it"
    );
    assert!(
        !orgs
            .mark_deleted(&gone)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "deleting twice reports nothing to do"
    );
    // Its rows are still there, as ciphertext nobody can open; reads no
    // longer see them at all.
    let fresh = SeaPatients::new(db.clone(), keys(&db));
    assert!(matches!(fresh.get(&acc(&gone), p.id).await, Ok(None)));
    // And no new key comes to life for it.
    assert!(fresh.create(&acc(&gone), &marked(), None).await.is_err());
    assert!(
        fresh
            .get(&acc(&kept), q.id)
            .await
            .is_ok_and(|p| p.is_some()),
        "other orgs are untouched"
    );
}

#[tokio::test]
async fn sqlite_org_deletion_shreds_keys_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    org_deletion(sqlite(&dir).await).await;
}

#[tokio::test]
async fn postgres_org_deletion_shreds_keys_and_refuses_new_ones() {
    let Some(pg) =
        carapace_testkit::postgres("postgres_org_deletion_shreds_keys_and_refuses_new_ones").await
    else {
        return;
    };
    org_deletion(
        Database::connect(&pg.app_settings())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
}

#[tokio::test]
async fn a_wrong_key_encryption_key_reads_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let other_kek = std::sync::Arc::new(carapace_infra::keys::KeyRing::new(
        db.clone(),
        std::sync::Arc::new(carapace_phi_crypto::LocalSealer::new(&[8; 32])),
    ));
    let wrong = SeaPatients::new(db.clone(), other_kek);
    let err = wrong.get(&acc(&ctx), p.id).await.err().map(|e| e.code());
    assert_eq!(
        err,
        Some("storage_unavailable"),
        "an unusable key provider is an outage (503), not data"
    );
}

/// Stores an idempotent response and a break-glass reason for `patient`,
/// so every sealed table has a row.
async fn marked_extras(
    db: &Database,
    ctx: &carapace_tenancy::TenantContext,
    patient: carapace_clinical::patient::PatientId,
) -> [u8; 32] {
    use carapace_infra::idempotency::{Begin, SeaIdempotency, StoredResponse};
    let subject =
        carapace_tenancy::SubjectId::parse("clinician-bob").unwrap_or_else(|e| panic!("{e}"));
    let until = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let reason = Phi::new(MARKERS[5].to_owned());
    let glass = SeaPatients::new(db.clone(), keys(db))
        .break_glass(&acc(ctx), patient, &subject, &reason, until)
        .await;
    assert!(glass.unwrap_or_else(|e| panic!("{e}")));
    let records = SeaIdempotency::new(db.clone(), keys(db));
    let (key_hash, now) = ([9; 32], time::OffsetDateTime::now_utc());
    let begun = records.begin(ctx, key_hash, [8; 32], now).await;
    assert_eq!(begun.unwrap_or_else(|e| panic!("{e}")), Begin::New);
    let response = StoredResponse {
        status: 201,
        content_type: Some("application/json".into()),
        location: None,
        body: MARKERS[0].as_bytes().to_vec(),
    };
    records
        .complete(ctx, key_hash, &response)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    key_hash
}

async fn rotation(db: Database) {
    use carapace_infra::sealed::{self, rotation::Rotation};
    let ring = keys(&db);
    let repo = SeaPatients::new(db.clone(), ring.clone());
    let ctx = new_org(&db).await;
    for i in 0..25 {
        let mut d = marked();
        d.given_name = Phi::new(format!("Patient{i}"));
        repo.create(&acc(&ctx), &d, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let before = repo
        .list(&acc(&ctx), &all_orgs())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items;
    assert_eq!(before.len(), 25);
    // A row in every other sealed table too.
    marked_appointment(&db, &ctx, before[0].id).await;
    let key_hash = marked_extras(&db, &ctx, before[0].id).await;
    let rotation = Rotation::new(db.clone(), ring.clone());
    let usage = rotation.usage(&ctx).await.unwrap_or_else(|e| panic!("{e}"));
    for t in &usage {
        assert!(t.rows.get(&1).is_some_and(|n| *n > 0), "{}: a row", t.table);
    }
    assert_eq!(ring.rotate(&ctx).await.unwrap_or_else(|e| panic!("{e}")), 2);

    // Readers keep reading while rows move.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (repo, ctx, stop) = (repo.clone(), ctx.clone(), stop.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let page = repo
                    .list(&acc(&ctx), &all_orgs())
                    .await
                    .unwrap_or_else(|e| panic!("read during rotation: {e}"));
                assert_eq!(page.items.len(), 25, "no row lost mid-rotation");
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        })
    };
    // One batch, then "the process dies": a fresh key ring resumes.
    assert_eq!(
        rotation
            .reencrypt_batch(&ctx, &sealed::patients::SEALED, 7)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        7
    );
    // Half moved: searches find rows under either version.
    let q = PatientQuery {
        member_id: Some(Phi::new(MARKERS[2].to_owned())),
        ..all_orgs()
    };
    let found = repo.list(&acc(&ctx), &q).await;
    assert_eq!(found.unwrap_or_else(|e| panic!("{e}")).items.len(), 25);
    let fresh = keys(&db);
    let resumed = Rotation::new(db.clone(), fresh.clone());
    let mut moved = 7;
    for table in sealed::REGISTRY {
        loop {
            let n = resumed
                .reencrypt_batch(&ctx, table, 7)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", table.table));
            if n == 0 {
                break;
            }
            moved += n;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let reads = reader.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(reads > 0);
    let others: u64 = usage
        .iter()
        .filter(|t| t.table != "patients")
        .map(|t| t.rows.values().sum::<u64>())
        .sum();
    assert_eq!(moved, 25 + others);
    for t in resumed.usage(&ctx).await.unwrap_or_else(|e| panic!("{e}")) {
        assert_eq!(t.rows.keys().collect::<Vec<_>>(), vec![&2], "{}", t.table);
    }
    let resumed = SeaPatients::new(db.clone(), fresh.clone());
    let replay = carapace_infra::idempotency::SeaIdempotency::new(db.clone(), fresh)
        .begin(&ctx, key_hash, [8; 32], time::OffsetDateTime::now_utc())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(&replay, carapace_infra::idempotency::Begin::Replay(r) if r.body == MARKERS[0].as_bytes()),
        "the stored response reads under the new key"
    );
    let after = resumed
        .list(&acc(&ctx), &all_orgs())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items;
    assert_eq!(after, before, "every row, unchanged, under the new key");
    // The member-id index follows the new key.
    assert_eq!(
        resumed
            .list(&acc(&ctx), &q)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .items
            .len(),
        25
    );
}

#[tokio::test]
async fn sqlite_org_key_rotation_is_online_complete_and_resumable() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    rotation(sqlite(&dir).await).await;
}

#[tokio::test]
async fn postgres_org_key_rotation_is_online_complete_and_resumable() {
    let Some(pg) =
        carapace_testkit::postgres("postgres_org_key_rotation_is_online_complete_and_resumable")
            .await
    else {
        return;
    };
    rotation(
        Database::connect(&pg.app_settings())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
}

#[tokio::test]
async fn kek_rotation_rewraps_every_data_key_and_resumes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let old = keys(&db); // KEK [7; 32]
    let repo = SeaPatients::new(db.clone(), old.clone());
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    old.rotate(&ctx).await.unwrap_or_else(|e| panic!("{e}"));
    let new_kek = carapace_phi_crypto::LocalSealer::new(&[42; 32]);
    assert_eq!(
        old.rewrap(&ctx, &new_kek)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        2
    );
    assert_eq!(
        old.rewrap(&ctx, &new_kek)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        0,
        "a rerun resumes past done keys"
    );
    let with_new = SeaPatients::new(
        db.clone(),
        std::sync::Arc::new(carapace_infra::keys::KeyRing::new(
            db.clone(),
            std::sync::Arc::new(new_kek),
        )),
    );
    assert_eq!(
        with_new
            .get(&acc(&ctx), p.id)
            .await
            .ok()
            .flatten()
            .map(|p| p.demographics),
        Some(marked())
    );
    let with_old = SeaPatients::new(db.clone(), keys(&db));
    assert!(
        with_old.get(&acc(&ctx), p.id).await.is_err(),
        "the old KEK no longer opens anything"
    );
}

/// A key provider that can be switched off (an unreachable KMS).
struct Flaky {
    inner: carapace_phi_crypto::LocalSealer,
    up: std::sync::atomic::AtomicBool,
}

impl carapace_phi_crypto::SecretSealer for Flaky {
    fn seal<'a>(
        &'a self,
        context: &'a [u8],
        plaintext: &'a [u8],
    ) -> carapace_phi_crypto::SealFuture<'a> {
        let result = if self.up.load(std::sync::atomic::Ordering::SeqCst) {
            self.inner.seal_now(context, plaintext)
        } else {
            Err(carapace_phi_crypto::SealError::Key)
        };
        Box::pin(std::future::ready(result))
    }
    fn open<'a>(
        &'a self,
        context: &'a [u8],
        sealed: &'a [u8],
    ) -> carapace_phi_crypto::SealFuture<'a> {
        let result = if self.up.load(std::sync::atomic::Ordering::SeqCst) {
            self.inner.open_now(context, sealed)
        } else {
            Err(carapace_phi_crypto::SealError::Key)
        };
        Box::pin(std::future::ready(result))
    }
}

#[tokio::test]
async fn key_provider_outage_cached_keys_then_503_and_never_plaintext() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let kek = Arc::new(Flaky {
        inner: carapace_phi_crypto::LocalSealer::new(&[7; 32]),
        up: true.into(),
    });
    let short = std::time::Duration::from_millis(300);
    let ring = Arc::new(carapace_infra::keys::KeyRing::with_ttl(
        db.clone(),
        kek.clone(),
        short,
    ));
    let repo = SeaPatients::new(db.clone(), ring);
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    kek.up.store(false, Ordering::SeqCst);
    assert!(
        repo.get(&acc(&ctx), p.id).await.is_ok_and(|p| p.is_some()),
        "cached keys keep working"
    );
    tokio::time::sleep(short * 2).await;
    let err = repo.get(&acc(&ctx), p.id).await.err().map(|e| e.code());
    assert_eq!(
        err,
        Some("storage_unavailable"),
        "after the TTL: unavailable (503), never wrong data"
    );

    // A new organization cannot get a key: its write fails and leaves no row.
    let fresh = new_org(&db).await;
    assert!(repo.create(&acc(&fresh), &marked(), None).await.is_err());
    kek.up.store(true, Ordering::SeqCst);
    let listed = repo
        .list(&acc(&fresh), &all_orgs())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        listed.items.is_empty(),
        "nothing was written, in plaintext or half-encrypted"
    );
    assert!(
        repo.get(&acc(&ctx), p.id).await.is_ok_and(|p| p.is_some()),
        "back when the provider is"
    );
}

#[cfg(feature = "kms")]
mod kms {
    //! The KMS key provider against a local KMS (moto's server).

    use std::sync::Arc;

    use carapace_clinical::patient::PatientRepository as _;
    use carapace_infra::SeaPatients;
    use carapace_infra::kms::{KmsSealer, KmsSettings};
    use carapace_phi_crypto::{SealError, SecretSealer as _};
    use carapace_testkit::kms::LocalKms;
    use sea_orm::{ConnectionTrait as _, DbBackend, Statement};

    use super::marked;
    use crate::support::{acc, keys, new_org, sqlite};

    fn sealer(endpoint: &str, key_id: &str) -> Arc<KmsSealer> {
        let settings = KmsSettings {
            endpoint: endpoint.parse().unwrap_or_else(|e| panic!("{e}")),
            region: "us-east-1".into(),
            key_id: key_id.into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
            timeout: std::time::Duration::from_secs(5),
        };
        Arc::new(KmsSealer::new(&settings).unwrap_or_else(|e| panic!("{e}")))
    }

    async fn first_wrapped_dek(dir: &tempfile::TempDir) -> Vec<u8> {
        let raw =
            sea_orm::Database::connect(format!("sqlite://{}/carapace.db", dir.path().display()))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        let row = raw
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT wrapped_dek FROM org_keys LIMIT 1",
            ))
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no key row"));
        row.try_get("", "wrapped_dek")
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn kms_wraps_keys_bound_to_their_context_and_takes_over_by_rewrap() {
        let Some(mut local_kms) = LocalKms::start("kms_wraps_keys").await else {
            return;
        };
        let key_id = local_kms.create_key().await;
        let kms = sealer(&local_kms.endpoint, &key_id);

        let secret = b"thirty-two bytes of key material";
        let sealed = kms
            .seal(b"dek:org-a:1", secret)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!sealed.windows(secret.len()).any(|w| w == secret));
        assert_eq!(
            kms.open(b"dek:org-a:1", &sealed).await.as_deref(),
            Ok(&secret[..])
        );
        assert_eq!(
            kms.open(b"dek:org-b:1", &sealed).await,
            Err(SealError::Open),
            "KMS itself refuses a key presented for another context"
        );
        let mut altered = sealed.clone();
        if let Some(b) = altered.last_mut() {
            *b ^= 1;
        }
        assert_eq!(
            kms.open(b"dek:org-a:1", &altered).await,
            Err(SealError::Open)
        );
        let other_key = sealer(&local_kms.endpoint, &local_kms.create_key().await);
        assert!(
            other_key.seal(b"x", b"y").await.is_ok(),
            "a second KMS key works"
        );
        assert_eq!(
            kms.open(b"dek:org-a:1", b"\x01not a kms value").await,
            Err(SealError::Open),
            "a local-format value is refused without a call"
        );

        // Data keys made under the local KEK move to KMS (keys rotate --kek-kms-key-id).
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = sqlite(&dir).await;
        let local = keys(&db);
        let ctx = new_org(&db).await;
        let patient = SeaPatients::new(db.clone(), local.clone())
            .create(&acc(&ctx), &marked(), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            local
                .rewrap(&ctx, &*kms)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            1
        );
        assert_eq!(
            first_wrapped_dek(&dir).await.first(),
            Some(&0x4b),
            "stored in KMS format"
        );
        let ring = Arc::new(carapace_infra::keys::KeyRing::with_ttl(
            db.clone(),
            kms.clone(),
            std::time::Duration::from_millis(200),
        ));
        let under_kms = SeaPatients::new(db.clone(), ring);
        assert_eq!(
            under_kms
                .get(&acc(&ctx), patient.id)
                .await
                .ok()
                .flatten()
                .map(|p| p.demographics),
            Some(marked())
        );
        // A new organization's key is created and wrapped by KMS.
        let fresh = new_org(&db).await;
        let created = under_kms
            .create(&acc(&fresh), &marked(), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));

        // KMS down: past the key TTL, PHI access is unavailable, never wrong.
        local_kms.stop();
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(
            kms.seal(b"x", b"y").await,
            Err(SealError::Key),
            "an unreachable KMS is an outage"
        );
        let err = under_kms
            .get(&acc(&fresh), created.id)
            .await
            .err()
            .map(|e| e.code());
        assert_eq!(err, Some("storage_unavailable"));
    }
}

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
