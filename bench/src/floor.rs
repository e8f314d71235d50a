//! The floor: the least SQL W1–W3 need while keeping every security
//! property that matters (forced row-level security by organization, PHI as
//! ciphertext, one audit row committed synchronously before any data leaves,
//! one transaction per request). `sql/floor/` holds verbatim copies of the
//! reference (`schema.sql`, `w1.sql`, `w1-noaudit.sql`, `w2.sql`, `w3.sql`);
//! this module loads it into a database of its own, with as many
//! organizations and patients as Carapace is seeded with, and gives pgbench
//! the scripts scaled to that size.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use carapace_testkit::PgTestDb;
use sea_orm::ConnectionTrait as _;

use crate::pgbench::{Done, Run, pgbench};
use crate::workload::Workload;

/// The reference schema's owner and app roles (created when missing).
const OWNER: &str = "carapace_ref_owner";
const APP: &str = "carapace_ref_app";

const SCHEMA: &str = include_str!("../sql/floor/schema.sql");

/// The reference database, loaded.
pub(crate) struct Floor {
    /// The database as the superuser (statistics, clean-up).
    pub(crate) db: PgTestDb,
    /// The database as the reference app role (what pgbench connects as).
    app_url: String,
    orgs: usize,
    per_org: usize,
}

/// A pgbench script of the floor, scaled to the loaded data.
pub(crate) struct Script {
    pub(crate) name: String,
    pub(crate) text: String,
}

impl Floor {
    /// The floor's script for `w`.
    pub(crate) fn script(&self, w: Workload) -> anyhow::Result<Script> {
        let (name, text) = match w {
            Workload::Read => ("floor_w1", include_str!("../sql/floor/w1.sql")),
            Workload::Write => ("floor_w2", include_str!("../sql/floor/w2.sql")),
            Workload::Search => ("floor_w3", include_str!("../sql/floor/w3.sql")),
            Workload::AccessLog => anyhow::bail!("the access log has no floor script"),
        };
        self.scaled(name, text)
    }

    /// pgbench running `script` as the reference app role.
    pub(crate) fn pgbench(
        &self,
        script: &Script,
        dir: &Path,
        clients: usize,
        secs: u64,
    ) -> anyhow::Result<Done> {
        let run = Run {
            url: &self.app_url,
            name: &script.name,
            script: &script.text,
            vars: &[],
        };
        pgbench(&run, dir, clients, secs)
    }

    /// W1 without the audit row: what auditing costs at the floor.
    pub(crate) fn noaudit(&self) -> anyhow::Result<Script> {
        self.scaled(
            "floor_w1_noaudit",
            include_str!("../sql/floor/w1-noaudit.sql"),
        )
    }

    /// The reference scripts assume 10 × 10,000 patients; replaces those
    /// constants with the loaded sizes (each one must be there).
    fn scaled(&self, name: &str, text: &str) -> anyhow::Result<Script> {
        let total = self.orgs * self.per_org;
        let mut text = text.to_owned();
        let swaps: &[(&str, String)] = if name == "floor_w2" {
            &[("random(1, 10)", format!("random(1, {})", self.orgs))]
        } else {
            &[
                ("random(1, 100000)", format!("random(1, {total})")),
                ("/ 10000 + 1", format!("/ {} + 1", self.per_org)),
            ]
        };
        for (from, to) in swaps {
            if !text.contains(from) {
                bail!("the floor script {name} no longer contains {from:?}");
            }
            text = text.replace(from, to);
        }
        Ok(Script {
            name: name.to_owned(),
            text,
        })
    }
}

/// Creates the reference database, applies `schema.sql` with `psql` and
/// loads `orgs` × `per_org` patients as the reference defines them.
pub(crate) async fn load(orgs: usize, per_org: usize) -> anyhow::Result<Floor> {
    let Some(db) = carapace_testkit::postgres_fresh("carapace_bench_floor", false).await else {
        bail!("set CARAPACE_TEST_PG_URL (a superuser URL) to run the benchmark");
    };
    let admin = sea_orm::Database::connect(db.owner_url.clone()).await?;
    // Roles are cluster-wide: create them once, tolerate a concurrent run.
    for (role, login) in [(OWNER, "NOLOGIN"), (APP, "LOGIN")] {
        admin
            .execute_unprepared(&format!(
                "DO $$ BEGIN
                   IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                     CREATE ROLE {role} {login};
                   END IF;
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                 END $$"
            ))
            .await?;
    }
    // The owner creates the tables and the `bench` schema.
    admin
        .execute_unprepared(&format!("ALTER DATABASE {} OWNER TO {OWNER}", db.name))
        .await?;
    let mut psql = Command::new("psql")
        .args(["-q", "-X", "-v", "ON_ERROR_STOP=1"])
        .arg("-v")
        .arg(format!("owner={OWNER}"))
        .arg("-v")
        .arg(format!("app={APP}"))
        .args(["-f", "-"])
        .arg(&db.owner_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running psql (PostgreSQL's client tools)")?;
    // psql substitutes `:"owner"` and `:"app"` in a script, not in `-c`.
    if let Some(mut stdin) = psql.stdin.take() {
        stdin.write_all(SCHEMA.as_bytes())?;
    }
    let out = psql.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "psql could not apply the floor's schema.sql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // As the superuser (row-level security does not apply). Ciphertext
    // columns: random bytes as long as AES-256-GCM makes the values Carapace
    // is seeded with (value + 33 bytes; `seed.rs`); blind index: 32 bytes.
    let total = orgs * per_org;
    admin
        .execute_unprepared(&format!(
            "CREATE FUNCTION pg_temp.ct(len int) RETURNS bytea LANGUAGE sql VOLATILE AS
               $f$ SELECT substr(sha512(random()::text::bytea) || sha512(random()::text::bytea), 1, len) $f$;
             INSERT INTO org_keys (org_id, purpose, version, wrapped)
               SELECT md5('carapace-bench-org-' || k)::uuid, p, 1, pg_temp.ct(72)
               FROM generate_series(1, {orgs}) k, unnest(ARRAY['data', 'index']) p;
             INSERT INTO bench.member_bidx (n, bidx)
               SELECT n, sha256(('carapace-bench-bidx-' || n)::bytea)
               FROM generate_series(1, {total}) n;
             INSERT INTO patients (id, org_id, given_name, family_name, birth_date, member_id, member_id_bidx)
               SELECT md5('carapace-bench-patient-' || n)::uuid,
                      md5('carapace-bench-org-' || ((n - 1) / {per_org} + 1))::uuid,
                      pg_temp.ct(length('Given' || n) + 33),
                      pg_temp.ct(length('Family' || n % 1000) + 33),
                      pg_temp.ct(length('1980-02-03') + 33),
                      pg_temp.ct(length('M-' || (n - 1) / {per_org} || '-' || n) + 33),
                      b.bidx
               FROM bench.member_bidx b (n, bidx);"
        ))
        .await?;
    admin
        .execute_unprepared("VACUUM ANALYZE org_keys, patients, audit_events, bench.member_bidx")
        .await?;
    admin.close().await?;
    let app_url = with_user(&db.owner_url, APP)?;
    Ok(Floor {
        db,
        app_url,
        orgs,
        per_org,
    })
}

/// `url` with another user and no password.
fn with_user(url: &str, user: &str) -> anyhow::Result<String> {
    let mut u = url::Url::parse(url).context("the test database's URL")?;
    u.set_username(user)
        .map_err(|()| anyhow::anyhow!("cannot set the user of {url}"))?;
    u.set_password(None)
        .map_err(|()| anyhow::anyhow!("cannot clear the password of {url}"))?;
    Ok(u.to_string())
}
