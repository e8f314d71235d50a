use sea_orm_migration::prelude::*;

/// PostgreSQL only: `subject_standing(org, subject)` reads a subject's
/// standing (`subject_blocks`) in one statement, for the check every
/// request with an issuer token makes (issue #20: it was BEGIN,
/// `set_config`, SELECT and COMMIT, four round trips and a transaction of
/// its own per request).
///
/// It is `SECURITY INVOKER` (the default): it runs as the server's role,
/// under the table's forced row-level security. It sets `app.org_id` to
/// `org` for its own duration (transaction-local, and reverted when the
/// function returns because of its `SET search_path` clause) and reads
/// with both the policy and an explicit `org_id = org`, so it can read
/// nothing the role could not read with the same setting by itself.
const PG: &str = "
CREATE FUNCTION subject_standing(org uuid, subject_name text)
    RETURNS TABLE (standing_state text, standing_not_before timestamptz)
    LANGUAGE plpgsql VOLATILE AS $f$
BEGIN
    PERFORM set_config('app.org_id', org::text, true);
    RETURN QUERY SELECT b.state, b.not_before FROM subject_blocks b
        WHERE b.org_id = org AND b.subject = subject_name;
END
$f$;
REVOKE ALL ON FUNCTION subject_standing(uuid, text) FROM PUBLIC;
DO $d$ BEGIN
    EXECUTE format('ALTER FUNCTION subject_standing(uuid, text) SET search_path = %I, pg_temp', current_schema());
END $d$;
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    crate::postgres_only(
        manager,
        PG,
        "GRANT EXECUTE ON FUNCTION subject_standing(uuid, text) TO {app};",
    )
    .await
}

crate::forward_only!();
