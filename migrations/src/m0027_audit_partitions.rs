use sea_orm_migration::prelude::*;

/// PostgreSQL only: `audit_events` becomes a table partitioned by month on
/// `recorded_at` (docs/adr/0008-audit-trail.md, "Partitions"), so a query
/// bounded in time reads only the months it names, and each month's
/// indexes stay the size of one month.
///
/// - The primary key gains the partition key: `(org_id, id, recorded_at)`
///   (a partitioned table's unique keys must include it). Ids are still
///   unique: they are UUIDv7 written once by the server, and nothing
///   references `audit_events` by a foreign key.
/// - Every index, check, default, row-level security policy (forced), the
///   app role's grant (SELECT, INSERT: through the parent only; the role
///   has no right on a partition itself) and the append-only triggers are
///   as before. Row triggers on the parent apply to every partition; a
///   TRUNCATE trigger, and forced row-level security with the same
///   policy, are added to each partition too (TRUNCATE of a partition by
///   name does not fire the parent's; a partition named directly is not
///   under the parent's policies).
/// - One partition per calendar month (UTC), named `audit_events_pYYYYMM`,
///   and a default partition for anything outside them.
/// - `audit_events_add_partitions()` creates the current month and the
///   next three if missing: `SECURITY DEFINER` (it runs as the owner, who
///   alone may create partitions), executable by the app role, taking no
///   argument, so the server's role can do nothing with it but what it
///   does. The server calls it at start-up and every hour.
/// - Existing rows move into the partitions (the months they fall in, up
///   to ten years back, are created first; older ones land in the default
///   partition), counted before the old table is dropped.
///
/// `audit_chain` and `audit_checkpoints` stay plain tables: they hold no
/// event time (the chain is keyed and read by position), so a month range
/// would not prune anything they are queried by.
const PG: &str = "
ALTER TABLE audit_events RENAME TO audit_events_unpartitioned;
ALTER TABLE audit_events_unpartitioned NO FORCE ROW LEVEL SECURITY;
ALTER INDEX audit_events_pkey RENAME TO audit_events_unpartitioned_pkey;
ALTER INDEX audit_events_time RENAME TO audit_events_unpartitioned_time;
ALTER INDEX audit_events_resource RENAME TO audit_events_unpartitioned_resource;
ALTER INDEX audit_events_actor RENAME TO audit_events_unpartitioned_actor;
ALTER INDEX audit_events_tx RENAME TO audit_events_unpartitioned_tx;

CREATE TABLE audit_events (
    LIKE audit_events_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS
) PARTITION BY RANGE (recorded_at);
ALTER TABLE audit_events ADD PRIMARY KEY (org_id, id, recorded_at);
CREATE INDEX audit_events_time ON audit_events (org_id, recorded_at, id);
CREATE INDEX audit_events_resource ON audit_events (org_id, resource_type, resource_id, recorded_at);
CREATE INDEX audit_events_actor ON audit_events (org_id, actor, recorded_at);
CREATE INDEX audit_events_tx ON audit_events (org_id, tx);

-- What every partition carries besides what the parent gives it: the
-- TRUNCATE guard, and row-level security (forced, the parent's policy) in
-- case a partition is ever named directly.
CREATE FUNCTION audit_events_guard_partition(name text) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE format(
        'CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
         ALTER TABLE %I ENABLE ROW LEVEL SECURITY;
         ALTER TABLE %I FORCE ROW LEVEL SECURITY;
         CREATE POLICY %I ON %I
           USING (org_id = NULLIF(current_setting(''app.org_id'', true), '''')::uuid)
           WITH CHECK (org_id = NULLIF(current_setting(''app.org_id'', true), '''')::uuid)',
        name || '_no_truncate', name, name, name, name || '_tenant_isolation', name);
END
$f$;
REVOKE ALL ON FUNCTION audit_events_guard_partition(text) FROM PUBLIC;

-- The partition of the month holding `month`, unless it exists: false
-- when it exists, or when the default partition already holds events of
-- that month (they stay there; a warning says so).
CREATE FUNCTION audit_events_add_month(month date) RETURNS boolean LANGUAGE plpgsql AS $f$
DECLARE
    first date := date_trunc('month', month)::date;
    name text := 'audit_events_p' || to_char(first, 'YYYYMM');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
        name,
        first::timestamp AT TIME ZONE 'UTC',
        (first + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    PERFORM audit_events_guard_partition(name);
    RETURN true;
EXCEPTION WHEN check_violation THEN
    RAISE WARNING 'audit_events: partition % not created, the default partition holds events of that month', name;
    RETURN false;
END
$f$;
REVOKE ALL ON FUNCTION audit_events_add_month(date) FROM PUBLIC;

-- The current month (UTC) and the next three: how many were created.
CREATE FUNCTION audit_events_add_partitions() RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER AS $f$
DECLARE
    created integer := 0;
    m date;
BEGIN
    -- One creator at a time across servers.
    PERFORM pg_advisory_xact_lock(1633906017, 27);
    FOR m IN SELECT generate_series(date_trunc('month', now() AT TIME ZONE 'UTC'),
                                    date_trunc('month', now() AT TIME ZONE 'UTC') + interval '3 months',
                                    interval '1 month')::date
    LOOP
        IF audit_events_add_month(m) THEN
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END
$f$;
REVOKE ALL ON FUNCTION audit_events_add_partitions() FROM PUBLIC;
DO $d$ BEGIN
    EXECUTE format('ALTER FUNCTION audit_events_add_partitions() SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION audit_events_add_month(date) SET search_path = %I, pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION audit_events_guard_partition(text) SET search_path = %I, pg_temp', current_schema());
END $d$;

SELECT audit_events_add_month(m::date) FROM generate_series(
    GREATEST(
        LEAST(COALESCE((SELECT date_trunc('month', min(recorded_at AT TIME ZONE 'UTC'))
                        FROM audit_events_unpartitioned),
                       date_trunc('month', now() AT TIME ZONE 'UTC')),
              date_trunc('month', now() AT TIME ZONE 'UTC')),
        date_trunc('month', now() AT TIME ZONE 'UTC') - interval '10 years'),
    date_trunc('month', now() AT TIME ZONE 'UTC'),
    interval '1 month') AS m;
SELECT audit_events_add_partitions();
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;
SELECT audit_events_guard_partition('audit_events_default');

INSERT INTO audit_events SELECT * FROM audit_events_unpartitioned;
DO $d$ BEGIN
    IF (SELECT count(*) FROM audit_events) <> (SELECT count(*) FROM audit_events_unpartitioned) THEN
        RAISE EXCEPTION 'audit_events: not every row was copied into the partitioned table';
    END IF;
END $d$;
DROP TABLE audit_events_unpartitioned;

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_events_tenant_isolation ON audit_events
  USING (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid)
  WITH CHECK (org_id = NULLIF(current_setting('app.org_id', true), '')::uuid);
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
";

async fn up(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    crate::postgres_only(
        manager,
        PG,
        "GRANT SELECT, INSERT ON audit_events TO {app};
         GRANT EXECUTE ON FUNCTION audit_events_add_partitions() TO {app};",
    )
    .await
}

crate::forward_only!();
