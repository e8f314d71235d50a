use super::*;
use crate::settings::Profile;
use carapace_infra::TlsMode;

fn keys(s: &Settings) -> Vec<&'static str> {
    s.problems().iter().map(|p| p.key).collect()
}

#[test]
fn dev_defaults_are_valid() {
    assert_eq!(keys(&Settings::default()), Vec::<&str>::new());
}

#[test]
fn production_on_defaults_lists_each_refusal_once() {
    let s = Settings {
        profile: Profile::Production,
        dev_tokens: Some(true),
        ..Settings::default()
    };
    assert_eq!(
        keys(&s),
        vec![
            "CARAPACE_DEV_TOKENS",
            "CARAPACE_DATABASE_URL",
            "CARAPACE_CURSOR_SECRET",
            "CARAPACE_OIDC_ISSUER",
            "CARAPACE_MASTER_KEY_FILE",
            "CARAPACE_AUDIT_SIGNING_KEY_FILE",
            "CARAPACE_AUDIT_WITNESS_URL"
        ]
    );
}

#[test]
fn production_refuses_ai_without_a_baa_and_the_local_provider() {
    let openai = Settings {
        ai_provider: "openai".into(),
        ai_url: Some("https://api.openai.example".into()),
        ai_api_key: Some("k".repeat(40).into()),
        ..Settings::default()
    };
    assert!(
        keys(&openai).is_empty(),
        "dev allows it (the routes stay off)"
    );
    let prod = |s: Settings| Settings {
        profile: Profile::Production,
        ..s
    };
    assert!(keys(&prod(openai.clone())).contains(&"CARAPACE_AI_BAA_SIGNED"));
    let signed = Settings {
        ai_baa_signed: true,
        ..openai.clone()
    };
    let k = keys(&prod(signed.clone()));
    assert!(!k.contains(&"CARAPACE_AI_BAA_SIGNED") && !k.contains(&"CARAPACE_AI_URL"));
    let local = Settings {
        ai_provider: "local".into(),
        ..signed.clone()
    };
    assert!(keys(&prod(local)).contains(&"CARAPACE_AI_PROVIDER"));
    let plain = Settings {
        ai_url: Some("http://api.openai.example".into()),
        ..signed
    };
    assert!(keys(&prod(plain)).contains(&"CARAPACE_AI_URL"));
    let unknown = Settings {
        ai_provider: "gpt".into(),
        ..Settings::default()
    };
    assert_eq!(keys(&unknown), vec!["CARAPACE_AI_PROVIDER"]);
    let incomplete = Settings {
        ai_provider: "openai".into(),
        ..Settings::default()
    };
    assert_eq!(keys(&incomplete), vec!["CARAPACE_AI_URL"]);
}

#[test]
fn an_otel_endpoint_needs_the_feature_and_an_http_url() {
    let s = Settings {
        otel_endpoint: Some("ftp://collector".into()),
        ..Settings::default()
    };
    assert_eq!(keys(&s), vec!["CARAPACE_OTEL_ENDPOINT"]);
    let ok = Settings {
        otel_endpoint: Some("http://collector:4318".into()),
        ..Settings::default()
    };
    assert_eq!(keys(&ok).is_empty(), cfg!(feature = "otel"));
}

#[test]
fn cors_takes_exact_origins_and_production_only_https_ones() {
    let dev = |origins: &str| Settings {
        cors_origins: origins.into(),
        ..Settings::default()
    };
    assert!(keys(&dev("https://app.example.org, http://localhost:5173")).is_empty());
    for bad in [
        "https://app.example.org/path",
        "app.example.org",
        "https://*.example.org",
        "*",
        "ftp://x.org",
    ] {
        assert_eq!(keys(&dev(bad)), vec!["CARAPACE_CORS_ORIGINS"], "{bad}");
    }
    let prod = |origins: &str| Settings {
        profile: Profile::Production,
        ..dev(origins)
    };
    assert!(!keys(&prod("https://app.example.org")).contains(&"CARAPACE_CORS_ORIGINS"));
    for refused in [
        "*",
        "http://app.example.org",
        "https://app.example.org, http://localhost:5173",
    ] {
        assert!(
            keys(&prod(refused)).contains(&"CARAPACE_CORS_ORIGINS"),
            "{refused}"
        );
    }
}

#[test]
fn production_postgres_needs_tls_unless_allowed() {
    let pg = Settings {
        profile: Profile::Production,
        database_url: SecretString::from("postgres://carapace_app@db/carapace"),
        cursor_secret: Some(SecretString::from("c".repeat(32))),
        ..Settings::default()
    };
    assert!(keys(&pg).contains(&"CARAPACE_DATABASE_TLS"));
    // Encrypted to whoever answers is not enough: a man in the middle
    // presents a certificate of its own (require) or one its CA signed for
    // another host (verify-ca).
    for unverified in [TlsMode::Prefer, TlsMode::Require, TlsMode::VerifyCa] {
        let s = Settings {
            database_tls: unverified,
            ..pg.clone()
        };
        assert!(
            keys(&s).contains(&"CARAPACE_DATABASE_TLS"),
            "{unverified:?} verifies no server"
        );
    }
    let tls = Settings {
        database_tls: TlsMode::VerifyFull,
        ..pg
    };
    assert!(!keys(&tls).contains(&"CARAPACE_DATABASE_TLS"));
    let allowed = Settings {
        database_tls: TlsMode::Disable,
        database_allow_insecure: true,
        ..tls
    };
    assert!(!keys(&allowed).contains(&"CARAPACE_DATABASE_TLS"));
    assert!(
        !keys(&allowed).contains(&"CARAPACE_DEV_TOKENS"),
        "dev tokens default off in production"
    );
}

#[test]
fn general_rules_apply_in_every_profile() {
    let s = Settings {
        bind: "nowhere".into(),
        database_url: SecretString::from("mysql://x"),
        database_pool_max: 0,
        body_limit_bytes: 10,
        dev_token_secret: Some(SecretString::from("short")),
        cursor_secret: Some(SecretString::from("c".repeat(31))),
        database_statement_timeout_secs: 0,
        ..Settings::default()
    };
    assert_eq!(
        keys(&s),
        vec![
            "CARAPACE_BIND",
            "CARAPACE_DATABASE_URL",
            "CARAPACE_DATABASE_POOL_MAX",
            "CARAPACE_DATABASE_STATEMENT_TIMEOUT_SECS",
            "CARAPACE_BODY_LIMIT_BYTES",
            "CARAPACE_DEV_TOKEN_SECRET",
            "CARAPACE_CURSOR_SECRET",
        ]
    );
    let shown: Vec<String> = s.problems().iter().map(ToString::to_string).collect();
    assert!(
        shown.iter().all(|l| !l.contains("short")),
        "messages never echo secrets"
    );
}

#[test]
fn the_tls_mode_is_set_in_one_place_only() {
    for url in [
        "postgres://app@db/carapace?sslmode=disable",
        "postgres://app@db/carapace?ssl-mode=disable",
        "postgres://app@db/carapace?SSLMODE=disable",
        "postgres://app@db/carapace?ssl%6Dode=disable",
        "postgres://app@db/carapace?application_name=x&sslmode=require",
    ] {
        let s = Settings {
            database_url: SecretString::from(url),
            ..Settings::default()
        };
        assert_eq!(keys(&s), vec!["CARAPACE_DATABASE_URL"], "{url}");
        let owner = Settings {
            database_url: SecretString::from("postgres://app@db/carapace"),
            database_owner_url: Some(SecretString::from(url)),
            ..Settings::default()
        };
        assert_eq!(keys(&owner), vec!["CARAPACE_DATABASE_OWNER_URL"], "{url}");
    }
    let plain = Settings {
        database_url: SecretString::from("postgres://app@db/carapace?sslrootcert=/etc/ca.pem"),
        ..Settings::default()
    };
    assert!(keys(&plain).is_empty(), "{:?}", keys(&plain));
}

#[test]
fn http_workers_default_to_half_the_cpus() {
    let http = |workers| Settings {
        http_workers: workers,
        ..Settings::default()
    };
    let threads = |workers, cpus| http(workers).config().http.worker_threads(cpus);
    assert_eq!(
        [threads(0, 1), threads(0, 2), threads(0, 3), threads(0, 16)],
        [1, 1, 1, 8]
    );
    assert_eq!(threads(3, 16), 3, "as configured");
}

#[test]
fn http_workers_are_bounded() {
    for (workers, refused) in [(0, false), (1, false), (256, false), (257, true)] {
        let s = Settings {
            http_workers: workers,
            ..Settings::default()
        };
        assert_eq!(
            keys(&s).contains(&"CARAPACE_HTTP_WORKERS"),
            refused,
            "{workers}"
        );
    }
}

#[test]
fn production_needs_an_https_issuer_with_an_audience() {
    let base = Settings {
        profile: Profile::Production,
        database_url: SecretString::from("postgres://carapace_app@db/carapace"),
        database_tls: TlsMode::VerifyFull,
        cursor_secret: Some(SecretString::from("c".repeat(32))),
        master_key_file: Some("/run/secrets/master.key".into()),
        audit_signing_key_file: Some("/run/secrets/audit.pem".into()),
        audit_witness_waived: true,
        ..Settings::default()
    };
    assert_eq!(keys(&base), vec!["CARAPACE_OIDC_ISSUER"]);
    let http = Settings {
        oidc_issuer: Some("http://idp.example".into()),
        ..base
    };
    assert_eq!(
        keys(&http),
        vec!["CARAPACE_OIDC_AUDIENCE", "CARAPACE_OIDC_ISSUER"]
    );
    let ok = Settings {
        oidc_issuer: Some("https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc".into()),
        oidc_audience: Some("client-123".into()),
        ..http
    };
    assert_eq!(keys(&ok), Vec::<&str>::new());
}

#[test]
fn kms_needs_a_region_and_credentials_and_excludes_the_key_file() {
    let kms = Settings {
        kms_key_id: Some("alias/carapace".into()),
        master_key_file: Some("/run/secrets/master.key".into()),
        ..Settings::default()
    };
    assert_eq!(
        keys(&kms),
        vec![
            "CARAPACE_MASTER_KEY_FILE",
            "CARAPACE_KMS_REGION",
            "CARAPACE_KMS_ACCESS_KEY_ID"
        ]
    );
    let ok = Settings {
        master_key_file: None,
        kms_region: Some("eu-west-1".into()),
        kms_access_key_id: Some("AKIDEXAMPLE".into()),
        kms_secret_access_key: Some(SecretString::from("s".repeat(40))),
        ..kms
    };
    assert_eq!(keys(&ok), Vec::<&str>::new());
    assert_eq!(
        ok.kms_endpoint_url().map(String::from).as_deref(),
        Some("https://kms.eu-west-1.amazonaws.com/")
    );
    let production = Settings {
        profile: Profile::Production,
        database_url: SecretString::from("postgres://carapace_app@db/carapace"),
        database_tls: TlsMode::VerifyFull,
        cursor_secret: Some(SecretString::from("c".repeat(32))),
        oidc_issuer: Some("https://idp.example".into()),
        oidc_audience: Some("client-123".into()),
        kms_endpoint: Some("http://127.0.0.1:4566".into()),
        audit_signing_key_file: Some("/run/secrets/audit.pem".into()),
        audit_witness_waived: true,
        ..ok
    };
    assert_eq!(keys(&production), vec!["CARAPACE_KMS_ENDPOINT"]);
}

#[test]
fn the_witness_needs_a_bucket_region_and_credentials_and_https_in_production() {
    let witness = Settings {
        audit_witness_url: Some("s3://Not_A_Bucket/x".into()),
        audit_witness_endpoint: Some("http://minio.internal:9000".into()),
        audit_anchor_every_secs: 0,
        audit_witness_max_backlog_secs: 0,
        audit_witness_retention_days: Some(0),
        ..Settings::default()
    };
    assert_eq!(
        keys(&witness),
        vec![
            "CARAPACE_AUDIT_ANCHOR_EVERY_SECS",
            "CARAPACE_AUDIT_WITNESS_MAX_BACKLOG_SECS",
            "CARAPACE_AUDIT_WITNESS_URL",
            "CARAPACE_AUDIT_WITNESS_REGION",
            "CARAPACE_AUDIT_WITNESS_ENDPOINT",
            "CARAPACE_AUDIT_WITNESS_ACCESS_KEY_ID",
            "CARAPACE_AUDIT_WITNESS_RETENTION_DAYS",
        ]
    );
    let loopback = Settings {
        audit_witness_url: Some("s3://carapace-audit/prod/eu".into()),
        audit_witness_endpoint: Some("http://127.0.0.1:9000".into()),
        audit_witness_allow_loopback: true,
        audit_witness_region: Some("us-east-1".into()),
        audit_witness_access_key_id: Some("AKIDEXAMPLE".into()),
        audit_witness_secret_access_key: Some(SecretString::from("s".repeat(40))),
        ..Settings::default()
    };
    assert_eq!(keys(&loopback), Vec::<&str>::new());
    assert_eq!(
        loopback.audit_witness_bucket(),
        Some(("carapace-audit".into(), "prod/eu".into()))
    );
    for bad in [
        "s3://ab",
        "https://bucket/x",
        "s3://bucket/a//b",
        "s3://bucket/../x",
    ] {
        let s = Settings {
            audit_witness_url: Some(bad.into()),
            ..loopback.clone()
        };
        assert_eq!(keys(&s), vec!["CARAPACE_AUDIT_WITNESS_URL"], "{bad}");
    }
    let aws = Settings {
        audit_witness_endpoint: None,
        audit_witness_allow_loopback: false,
        ..loopback.clone()
    };
    assert_eq!(
        aws.audit_witness_endpoint_url()
            .map(String::from)
            .as_deref(),
        Some("https://s3.us-east-1.amazonaws.com/")
    );
    let production = |s: Settings| Settings {
        profile: Profile::Production,
        database_url: SecretString::from("postgres://carapace_app@db/carapace"),
        database_tls: TlsMode::VerifyFull,
        cursor_secret: Some(SecretString::from("c".repeat(32))),
        oidc_issuer: Some("https://idp.example".into()),
        oidc_audience: Some("client-123".into()),
        master_key_file: Some("/run/secrets/master.key".into()),
        audit_signing_key_file: Some("/run/secrets/audit.pem".into()),
        ..s
    };
    assert_eq!(keys(&production(aws.clone())), Vec::<&str>::new());
    assert_eq!(
        keys(&production(loopback)),
        vec!["CARAPACE_AUDIT_WITNESS_ENDPOINT"]
    );
    let none = Settings {
        audit_witness_url: None,
        ..aws
    };
    assert_eq!(
        keys(&production(none.clone())),
        vec!["CARAPACE_AUDIT_WITNESS_URL"]
    );
    let waived = Settings {
        audit_witness_waived: true,
        ..none
    };
    assert_eq!(keys(&production(waived.clone())), Vec::<&str>::new());
    let shown = waived.redacted().to_string();
    assert!(shown.contains("waived: a database superuser can cut the newest events unseen"));
}

#[test]
fn every_production_check_has_a_name() {
    assert!(PRODUCTION_CHECKS.iter().all(|c| !c.name.is_empty()));
}
