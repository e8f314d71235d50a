use carapace_clinical::patient::{Demographics, PatientInput};
use carapace_infra::{Database, DbSettings, SeaOrganizations};
use carapace_tenancy::{
    NewOrganization, OrgName, OrgSlug, OrganizationRepository, SubjectId, TenantContext,
};
use time::macros::date;

pub fn demographics(given: &str, member_id: Option<&str>) -> Demographics {
    PatientInput {
        given_name: given.into(),
        family_name: "Roe".into(),
        birth_date: "1980-02-03".into(),
        member_id: member_id.map(Into::into),
        phone: None,
        email: None,
        sex: None,
    }
    .parse(date!(2026 - 01 - 01))
    .unwrap_or_else(|e| panic!("{e:?}"))
}

/// Creates a new organization and returns a context acting in it.
pub async fn new_org(db: &Database) -> TenantContext {
    let slug = format!("org-{}", uuid::Uuid::new_v4().simple());
    let org = SeaOrganizations::new(db.clone())
        .create(NewOrganization {
            slug: OrgSlug::parse(&slug[..30]).unwrap_or_else(|e| panic!("{e}")),
            name: OrgName::parse("Test Clinic").unwrap_or_else(|e| panic!("{e}")),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    TenantContext::new(
        org.id,
        SubjectId::parse("tester").unwrap_or_else(|e| panic!("{e}")),
    )
}

/// A one-connection pool as `url`, both as a raw connection and as the
/// Database a repository uses, so raw checks see the very connection the
/// repository just returned to the pool.
pub async fn one_connection(url: &str) -> (sea_orm::DatabaseConnection, Database) {
    let mut opts = sea_orm::ConnectOptions::new(url.to_owned());
    opts.max_connections(1)
        .min_connections(1)
        .sqlx_logging(false);
    let raw = sea_orm::Database::connect(opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let db = Database::from_connection(raw.clone()).unwrap_or_else(|| panic!("backend"));
    (raw, db)
}

pub async fn sqlite(dir: &tempfile::TempDir) -> Database {
    let url = format!("sqlite://{}/carapace.db", dir.path().display());
    let db = Database::connect(&DbSettings::new(url.into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    db.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    db
}

/// A key ring over `db` with a fixed test key-encryption key.
pub fn keys(db: &Database) -> std::sync::Arc<carapace_infra::keys::KeyRing> {
    std::sync::Arc::new(carapace_infra::keys::KeyRing::new(
        db.clone(),
        std::sync::Arc::new(carapace_phi_crypto::LocalSealer::new(&[7; 32])),
    ))
}

/// The access a test acts with: the system, in `ctx`.
pub fn acc(ctx: &TenantContext) -> carapace_audit::Access {
    carapace_audit::Access::system(ctx.clone())
}
