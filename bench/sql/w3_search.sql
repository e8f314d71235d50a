-- W3, the blind-index search: the SQL Carapace runs for GET /api/v1/patients?member_id=…
\set n random(1, :count)
SELECT org AS o, member_idx AS m FROM bench_ids WHERE n = :n \gset
BEGIN;
SELECT set_config('app.org_id', ':o', true);
SELECT * FROM patients WHERE org_id = ':o' AND member_id_idx = decode(':m', 'hex') ORDER BY id LIMIT 51;
INSERT INTO audit_events (org_id, id, recorded_at, actor, action, resource_type, resource_id, outcome, body) VALUES (':o', gen_random_uuid(), now(), 'bench-clinician', 'patient.search', 'patient', NULL, 'allowed', '{"id":"00000000-0000-7000-8000-000000000000","org":"00000000-0000-0000-0000-000000000000","at":"2026-11-23T18:00:00.000000Z","actor":"bench-clinician","actor_kind":"user","acting_for":null,"action":"patient.read","resource_type":"patient","resource_id":"00000000-0000-0000-0000-000000000000","phi_fields":["given_name","family_name","birth_date","member_id","phone","email"],"outcome":"allowed","origin":{"request_id":"00000000000000000000000000000000","client_ip":"127.0.0.1","user_agent":null},"detail":null}');
COMMIT;
