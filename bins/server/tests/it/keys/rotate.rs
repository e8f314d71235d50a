use super::*;

/// Every registered table of `versions` holds rows only under `version`,
/// and at least one (`made` has a row in each).
fn all_under(versions: &BTreeMap<&'static str, BTreeMap<u32, u64>>, version: u32) {
    for (table, rows) in versions {
        assert_eq!(
            rows.keys().copied().collect::<Vec<_>>(),
            vec![version],
            "{table}: {rows:?}"
        );
    }
}

pub(super) async fn rotate_everything(
    app: &TestApp,
    voice: &VoiceApi,
    backend: Backend,
    test: &str,
) {
    let made = fill(app, voice, 12).await;
    let other = fill(app, voice, 2).await;
    let env = Env::of(app, backend, test).await;
    let slug = made.org.slug.clone();
    all_under(&env.versions(made.org.id).await, 1);
    reads_back(app, &made).await;

    // Nothing to retire yet: version 1 is current.
    let (code, said) = env
        .run(&["keys", "retire", "--org", &slug, "--version", "1"])
        .await;
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("current data key"), "{said}");

    // A rotation killed after its first progress line...
    let first = env
        .run_killed_after(
            &["keys", "rotate", "--org", &slug, "--batch", "1"],
            " re-encrypted",
        )
        .await;
    assert!(
        first.contains(&format!("{slug}: data key version 2")),
        "{first}"
    );
    let patients = made.patients.len() + 1;
    assert!(
        first.contains(&format!("{slug}: patients: 1 of {patients} re-encrypted")),
        "{first}"
    );
    let halfway = env.versions(made.org.id).await;
    let left: u64 = halfway.values().filter_map(|r| r.get(&1)).sum();
    if left == 0 {
        eprintln!("note: the rotation finished before it was killed");
    }
    // ...leaves everything readable and findable, whatever it moved.
    reads_back(app, &made).await;
    let (code, said) = env.run(&["keys", "status", "--org", &slug]).await;
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("current v2"), "{said}");

    // Resumed: no new version, every table done.
    let (code, said) = env
        .run(&["keys", "rotate", "--org", &slug, "--resume", "--batch", "3"])
        .await;
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!(
            "{slug}: resuming: rows move to data key version 2"
        )),
        "{said}"
    );
    for t in REGISTRY {
        assert!(
            said.contains(&format!("{slug}: {}: ", t.table)),
            "{} in {said}",
            t.table
        );
    }
    assert!(
        said.contains(&format!(
            "{slug}: done ({left} rows re-encrypted under version 2)"
        )),
        "{said}"
    );
    let after = env.versions(made.org.id).await;
    all_under(&after, 2);
    // The other organization kept its own key.
    all_under(&env.versions(other.org.id).await, 1);
    reads_back(app, &made).await;
    reads_back(app, &other).await;

    let (code, said) = env.run(&["keys", "status", "--org", &slug]).await;
    assert_eq!(code, Some(0), "{said}");
    let patients_line = said
        .lines()
        .find(|l| l.starts_with("patients "))
        .unwrap_or_default();
    assert!(
        patients_line.ends_with(&format!("v1: 0  v2: {patients}")),
        "{said}"
    );
    for t in REGISTRY {
        let n = after[t.table].get(&2).copied().unwrap_or(0);
        assert!(
            said.lines().any(|l| l.starts_with(&format!("{} ", t.table))
                && l.ends_with(&format!("v1: 0  v2: {n}"))),
            "{}: {said}",
            t.table
        );
    }
    assert!(said.contains("unused versions: v1 (retire with"), "{said}");

    // Version 2 is too new to retire version 1: a server may still seal
    // under it. And indeed this server does (it has not looked its key up
    // again): a patient made now is under version 1.
    let (code, said) = env
        .run(&["keys", "retire", "--org", &slug, "--version", "1"])
        .await;
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("too new"), "{said}");
    env.backdate_key(made.org.id, 2).await;
    let ada = app.token_as(&made.org, Role::Clinician, "clinician-ada");
    let late = post(
        app,
        &ada,
        "/api/v1/patients",
        &crate::support::patient("Late"),
    )
    .await;
    assert_eq!(
        env.versions(made.org.id).await["patients"].get(&1),
        Some(&1)
    );
    let (code, said) = env
        .run(&["keys", "retire", "--org", &slug, "--version", "1"])
        .await;
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("refused: 1 rows of patients are still under version 1"),
        "{said}"
    );
    let (code, said) = env
        .run(&["keys", "rotate", "--org", &slug, "--resume"])
        .await;
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("{slug}: patients: 1 of 1 re-encrypted")),
        "{said}"
    );
    let (code, said) = env
        .run(&["keys", "retire", "--org", &slug, "--version", "1"])
        .await;
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("data key version 1 retired"), "{said}");
    let (code, said) = env
        .run(&["keys", "retire", "--org", &slug, "--version", "1"])
        .await;
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("no data key version 1"), "{said}");

    // Gone for good, and nothing needed it.
    let (code, said) = env.run(&["keys", "status", "--org", &slug]).await;
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("data key versions v2; current v2"), "{said}");
    assert!(said.contains("unused versions: none"), "{said}");
    reads_back(app, &made).await;
    let late = get(
        app,
        &ada,
        &format!(
            "/api/v1/patients/{}",
            late["id"].as_str().unwrap_or_default()
        ),
    )
    .await;
    assert_eq!(late["given_name"], "Late");
    let (code, said) = env.run(&["keys", "status", "--org", &other.org.slug]).await;
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("data key versions v1; current v1"), "{said}");
    reads_back(app, &other).await;

    // Each step is in the organization's audit trail.
    let compliance = app.token(&made.org, Role::Compliance);
    let trail = get(app, &compliance, "/api/v1/audit-events?limit=500")
        .await
        .to_string();
    for action in [
        "keys.rotate_data_key",
        "keys.reencrypt",
        "keys.retire_data_key",
    ] {
        assert!(trail.contains(action), "{action} in the trail");
    }
    // An unknown organization is a usage error.
    let (code, _) = env.run(&["keys", "status", "--org", "no-such-org"]).await;
    assert_eq!(code, Some(2));
}
