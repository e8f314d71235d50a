//! The patient repository behaves the same on SQLite and PostgreSQL, and
//! never crosses organizations.

use carapace_clinical::patient::{
    PageLimit, PatientId, PatientPatch, PatientQuery, PatientRepository, Visibility,
};
use carapace_infra::{Database, SeaPatients};
use carapace_phi_crypto::Phi;

use crate::support::{acc, demographics, new_org, sqlite};

async fn crud_and_isolation(db: Database) {
    let repo = SeaPatients::new(db.clone(), crate::support::keys(&db));
    let a = new_org(&db).await;
    let b = new_org(&db).await;

    let jane = repo
        .create(&acc(&a), &demographics("Jane", Some("M-1")), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let got = repo
        .get(&acc(&a), jane.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got.as_ref()
            .map(|p| p.demographics.given_name.expose_phi().as_str()),
        Some("Jane")
    );

    // B sees nothing of A's, and cannot change or delete it.
    assert!(
        repo.get(&acc(&b), jane.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    let patch = PatientPatch {
        given_name: Some(Phi::new("Mallory".into())),
        ..PatientPatch::default()
    };
    assert!(
        repo.update(&acc(&b), jane.id, &patch, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    assert!(
        !repo
            .delete(&acc(&b), jane.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert!(
        repo.list(
            &acc(&b),
            &PatientQuery {
                visibility: Visibility::Organization,
                ..PatientQuery::default()
            }
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items
        .is_empty()
    );
    let still = repo
        .get(&acc(&a), jane.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        still.map(|p| p.demographics.given_name.expose_phi().clone()),
        Some("Jane".into())
    );

    // A's own update and delete work.
    let updated = repo
        .update(&acc(&a), jane.id, &patch, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        updated.map(|p| p.demographics.given_name.expose_phi().clone()),
        Some("Mallory".into())
    );
    assert!(
        repo.delete(&acc(&a), jane.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert!(
        repo.get(&acc(&a), jane.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
    assert!(
        !repo
            .delete(&acc(&a), jane.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert!(
        repo.get(&acc(&a), PatientId::generate())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
}

async fn pagination_and_filter(db: Database) {
    let repo = SeaPatients::new(db.clone(), crate::support::keys(&db));
    let a = new_org(&db).await;
    let b = new_org(&db).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let member = if i % 2 == 0 { "EVEN" } else { "ODD" };
        ids.push(
            repo.create(
                &acc(&a),
                &demographics(&format!("P{i}"), Some(member)),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .id,
        );
    }
    repo.create(&acc(&b), &demographics("Other", Some("EVEN")), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let q = PatientQuery {
            limit: PageLimit::parse(Some(2)).unwrap_or_else(|e| panic!("{e}")),
            after,
            visibility: Visibility::Organization,
            ..PatientQuery::default()
        };
        let page = repo
            .list(&acc(&a), &q)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|p| p.id));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every patient once, in creation order");

    let q = PatientQuery {
        member_id: Some(Phi::new("EVEN".into())),
        visibility: Visibility::Organization,
        ..PatientQuery::default()
    };
    let even = repo
        .list(&acc(&a), &q)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        even.items.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![ids[0], ids[2], ids[4]]
    );
}

#[tokio::test]
async fn sqlite_crud_and_isolation() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    crud_and_isolation(sqlite(&dir).await).await;
}

#[tokio::test]
async fn sqlite_pagination_and_member_filter() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    pagination_and_filter(sqlite(&dir).await).await;
}

#[tokio::test]
async fn postgres_crud_and_isolation() {
    let Some(pg) = carapace_testkit::postgres("postgres_crud_and_isolation").await else {
        return;
    };
    crud_and_isolation(
        Database::connect(&pg.app_settings())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
}

#[tokio::test]
async fn postgres_pagination_and_member_filter() {
    let Some(pg) = carapace_testkit::postgres("postgres_pagination_and_member_filter").await else {
        return;
    };
    pagination_and_filter(
        Database::connect(&pg.app_settings())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
}

#[tokio::test]
async fn sqlite_migrations_are_current_after_migrate() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    assert_eq!(
        db.pending_migrations()
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        Vec::<String>::new()
    );
    db.ping().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_deleted_organizations_patients_are_hidden_even_from_a_stale_directory() {
    use carapace_infra::SeaOrganizations;
    use carapace_tenancy::OrganizationRepository as _;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let repo = SeaPatients::new(db.clone(), crate::support::keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &demographics("Ann", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // One instance remembers the organization...
    let remembering = SeaOrganizations::remembering(db.clone(), std::time::Duration::from_secs(60));
    assert!(
        remembering
            .find_by_id(ctx.org())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );
    // ...while another deletes it.
    assert!(
        SeaOrganizations::new(db.clone())
            .mark_deleted(&ctx)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert!(
        remembering
            .find_by_id(ctx.org())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some(),
        "the directory may be a second stale"
    );
    let read = repo
        .get(&acc(&ctx), p.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(read.is_none(), "but the patient is gone at once");
    // A change through the remembering instance itself is seen at once.
    let fresh = new_org(&db).await;
    assert!(
        remembering
            .find_by_id(fresh.org())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    );
    assert!(
        remembering
            .mark_deleted(&fresh)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert!(
        remembering
            .find_by_id(fresh.org())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none()
    );
}
