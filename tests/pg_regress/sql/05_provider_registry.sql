-- The provider registry: seeded facts, capability search, registration.
CREATE EXTENSION IF NOT EXISTS pg_integrations;
\pset footer off

\getenv abs_srcdir PG_ABS_SRCDIR
\i :abs_srcdir/include/helpers.sql

-- Seeded from seed 003 and the other seeds, with the researched facts where they
-- differ from the seed (Tabby: AE, SA, KW; Fetchr defunct; Tamara: SA, AE).
SELECT category, count(*) AS providers, count(*) FILTER (WHERE is_mena_provider) AS mena
FROM integration_providers GROUP BY category ORDER BY category;
SELECT provider, supported_countries, supported_currencies, status, primary_locale
FROM integration_providers WHERE provider IN ('tabby', 'tamara', 'fetchr', 'moyasar', 'stripe') ORDER BY provider;
SELECT count(*) AS locale_mismatches FROM integration_providers
WHERE primary_locale <> CASE WHEN is_mena_provider THEN 'ar' ELSE 'en' END;
SELECT provider, webhook_signing, webhook_signature_header FROM integration_providers
WHERE webhook_signing NOT IN ('none', 'unverified') ORDER BY provider;

-- Capability search: active only, MENA first, case-insensitive codes
-- seed 003's own check query, as written
SELECT provider, name, is_mena_provider FROM integration_providers ORDER BY is_mena_provider DESC, provider;
SELECT count(*) AS name_differs_from_display_name FROM integration_providers WHERE name IS DISTINCT FROM display_name;
SELECT provider, is_mena_provider FROM get_payment_providers_by_capability('one_time');
SELECT provider FROM get_payment_providers_by_capability('bnpl', 'kw', 'KWD');
SELECT provider FROM get_payment_providers_by_capability('recurring', 'SA', 'SAR');
SELECT provider FROM get_payment_providers_by_capability('payouts', 'EG');
SELECT count(*) AS none_for_unknown_capability FROM get_payment_providers_by_capability('teleport');
SELECT try($$SELECT get_payment_providers_by_capability('one_time', 'KSA')$$);
SELECT try($$SELECT get_payment_providers_by_capability('one_time', 'UK')$$);
SELECT try($$SELECT get_payment_providers_by_capability('one_time', NULL, 'RMB')$$);
SELECT try($$SELECT get_payment_providers_by_capability(NULL)$$);
-- the array conditions are served by the GIN indexes
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM integration_providers
WHERE status = 'active' AND payment_capabilities @> ARRAY['one_time'] AND supported_countries @> ARRAY['SA'];
RESET enable_seqscan;

-- Anyone may read the registry and search it
BEGIN;
SET LOCAL ROLE anon;
SELECT count(*) > 0 AS anon_reads FROM integration_providers;
SELECT count(*) > 0 AS anon_searches FROM get_payment_providers_by_capability('one_time', 'AE');
SELECT try($$UPDATE integration_providers SET status = 'defunct' WHERE provider = 'tabby'$$);
ROLLBACK;

-- Adding a provider is a row, not a schema change
BEGIN;
SET LOCAL ROLE authenticated;
SELECT try($$SELECT integrations.register_provider('noon_payments', 'Noon Payments', 'payment')$$);
ROLLBACK;
SET ROLE service_role;
SELECT integrations.register_provider('noon_payments', 'Noon Payments', 'payment',
    p_website => 'https://www.noonpayments.com', p_auth_methods => '{API_KEY}', p_is_mena_provider => true,
    p_supported_countries => '{ae,sa,AE}', p_supported_currencies => '{aed,SAR}',
    p_payment_capabilities => '{One_Time,refunds}', p_payment_methods => '{mada,card}', p_sort_order => 15);
RESET ROLE;
SELECT provider, auth_methods, supported_countries, supported_currencies, primary_locale, payment_capabilities, webhook_signing, builtin
FROM integration_providers WHERE provider = 'noon_payments';
SELECT provider FROM get_payment_providers_by_capability('one_time', 'AE', 'AED');
-- registering again replaces the row
SELECT integrations.register_provider('noon_payments', 'Noon', 'payment', p_is_mena_provider => true,
    p_supported_countries => '{AE}', p_payment_capabilities => '{one_time}');
SELECT display_name, supported_countries, supported_currencies FROM integration_providers WHERE provider = 'noon_payments';
SELECT try($$SELECT integrations.register_provider('bad', 'Bad', 'gambling')$$);
SELECT try($$SELECT integrations.register_provider('bad', 'Bad', 'payment', p_supported_countries => '{AE,UK}')$$);
SELECT try($$SELECT integrations.register_provider('bad', 'Bad', 'payment', p_supported_currencies => '{SAR,SR}')$$);
SELECT try($$SELECT integrations.register_provider('bad', 'Bad', 'payment', p_auth_methods => '{magic_link}')$$);
SELECT try($$SELECT integrations.register_provider('bad', 'Bad', 'payment', p_webhook_signing => 'md5')$$);
SELECT try($$SELECT integrations.register_provider('bad', 'Bad', 'payment', p_website => 'ftp://bad.example')$$);
SELECT try($$SELECT integrations.register_provider('Bad Name', 'Bad', 'payment')$$);
SELECT count(*) AS bad_rows FROM integration_providers WHERE provider LIKE 'bad%';
-- direct writes are checked too
SELECT try($$UPDATE integration_providers SET supported_currencies = '{SAR,XYZ}' WHERE provider = 'noon_payments'$$);
-- pg_dump carries the added provider, not the built-in ones
SELECT c.cond FROM pg_extension e, unnest(e.extcondition) AS c(cond)
WHERE e.extname = 'pg_integrations' AND c.cond LIKE '%builtin%';
DELETE FROM integration_providers WHERE provider = 'noon_payments';
DROP FUNCTION try(text, text), act_as(text, text);
