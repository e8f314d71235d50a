//! `audit verify`: each organization's hash chain against its signed
//! checkpoints and the witness, or an export offline.

use std::io::Write as _;
use std::process::ExitCode;

use super::export::fetch_export;
use super::{Place, org_id};
use crate::cli::{EXIT_FAILURE, usage_error};
use crate::server;
use crate::settings::Config;

pub(super) async fn audit_verify_export(
    settings: &Config,
    place: &Place,
) -> anyhow::Result<ExitCode> {
    let key = server::audit_signing_key(settings)?.verifying_key();
    let (manifest, events) = fetch_export(settings, place).await?;
    let mut out = std::io::stdout();
    match carapace_audit::export::verify_export(&manifest, events, &key) {
        Ok(n) => {
            let _ = writeln!(
                out,
                "{}: export ok: {n} events, positions {}..={}",
                manifest.body.org, manifest.body.first_position, manifest.body.last_position
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            let _ = writeln!(out, "{}: export TAMPERED: {problem}", manifest.body.org);
            Ok(ExitCode::from(EXIT_FAILURE))
        }
    }
}

pub(super) async fn audit_verify(
    settings: &Config,
    org: Option<&str>,
    archive: Option<&Place>,
) -> anyhow::Result<ExitCode> {
    let db = server::connect(settings).await?;
    let key = server::audit_signing_key(settings)?.verifying_key();
    let witness = crate::witness::audit_witness(settings)?;
    let orgs = match org {
        Some(slug) => match org_id(&db, slug).await? {
            Some(id) => vec![id],
            None => return usage_error(format!("no organization with slug {slug:?}")),
        },
        None => carapace_infra::audit::every_org(&db).await?,
    };
    let mut out = std::io::stdout();
    let mut failed = false;
    if let (Some(place), [org]) = (archive, orgs.as_slice()) {
        // The archive alone, then its join with the stored chain.
        let (manifest, events) = fetch_export(settings, place).await?;
        let resumes = carapace_infra::audit::chain_resumes(&db, *org).await?;
        let checked =
            carapace_audit::export::verify_export(&manifest, events, &key).and_then(|n| {
                if manifest.body.org != *org {
                    return Err(carapace_audit::export::ExportProblem::BadManifestSignature);
                }
                match resumes {
                    Some((position, link)) => {
                        carapace_audit::export::joins(&manifest, position, &link).map(|()| n)
                    }
                    None => Err(carapace_audit::export::ExportProblem::Disjoint {
                        ends: manifest.body.last_position,
                        resumes: 0,
                    }),
                }
            });
        match checked {
            Ok(n) => {
                let _ = writeln!(
                    out,
                    "{org}: archive ok: {n} events, positions {}..={}, the chain resumes after {}",
                    manifest.body.first_position,
                    manifest.body.last_position,
                    manifest.body.last_position
                );
            }
            Err(problem) => {
                failed = true;
                let _ = writeln!(out, "{org}: archive TAMPERED: {problem}");
            }
        }
    }
    for org in orgs {
        let v = carapace_infra::audit::verify_org(&db, org, &key).await?;
        match v.chain {
            Ok(ok) => {
                let _ = writeln!(
                    out,
                    "{org}: ok: {} events chained (head {}), {} signed checkpoints matched, {} awaiting chaining",
                    ok.entries, ok.head, ok.checkpoints, v.pending
                );
            }
            Err(finding) => {
                failed = true;
                let _ = writeln!(
                    out,
                    "{org}: TAMPERED at position {}: {}",
                    finding.position, finding.problem
                );
            }
        }
        if let Some(w) = &witness {
            failed |= !witness_verify(&db, org, &key, w.as_ref(), settings, &mut out).await;
        }
    }
    if let Some(w) = &witness
        && org.is_none()
    {
        match carapace_infra::witness::unknown_orgs(&db, w.as_ref()).await {
            Ok(names) => {
                for name in names {
                    failed = true;
                    let _ = writeln!(
                        out,
                        "{name}: WITNESS: the witness holds checkpoints of this organization, which the database does not have (restored from an older copy?)"
                    );
                }
            }
            Err(e) => {
                failed = true;
                let _ = writeln!(
                    out,
                    "WITNESS UNAVAILABLE: {e}: cannot list its organizations"
                );
            }
        }
    }
    db.close().await;
    Ok(if failed {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

/// Compares `org`'s trail with the witness and prints the outcome; false
/// when anything is wrong or the witness cannot be read.
async fn witness_verify(
    db: &carapace_infra::Database,
    org: carapace_tenancy::OrgId,
    key: &ed25519_dalek::VerifyingKey,
    witness: &dyn carapace_audit::witness::Witness,
    settings: &Config,
    out: &mut impl std::io::Write,
) -> bool {
    let overdue = settings.audit.overdue();
    match carapace_infra::witness::compare_org(db, org, key, witness, overdue).await {
        Ok(r) if r.findings.is_empty() => {
            let _ = writeln!(
                out,
                "{org}: witness: ok: {} witnessed checkpoints matched (anchored head {}), {} awaiting anchoring",
                r.matched, r.anchored, r.unanchored
            );
            true
        }
        Ok(r) => {
            for f in &r.findings {
                let _ = writeln!(out, "{org}: WITNESS: {f}");
            }
            false
        }
        Err(e) => {
            let _ = writeln!(out, "{org}: WITNESS UNAVAILABLE: {e}: cannot compare");
            false
        }
    }
}
