-- pg_integrations: the provider registry (seed 003, with the researched facts of
-- shared/data/mena_providers.tsv where they differ from the seed's claims).
-- Adding a provider is a row (or integrations.register_provider()), never a
-- schema change: categories, auth methods and signing schemes are CHECKed
-- text, not enums.

CREATE FUNCTION integrations.is_iso_countries(p_codes text[]) RETURNS boolean
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pgi_is_iso_countries';
COMMENT ON FUNCTION integrations.is_iso_countries(text[]) IS
    'Whether every element is an ISO 3166-1 alpha-2 country code (upper case; NULL array counts as valid, NULL elements do not).';
CREATE FUNCTION integrations.is_iso_currencies(p_codes text[]) RETURNS boolean
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'pgi_is_iso_currencies';
COMMENT ON FUNCTION integrations.is_iso_currencies(text[]) IS
    'Whether every element is an ISO 4217 currency code in use (upper case; NULL array counts as valid, NULL elements do not).';
GRANT EXECUTE ON FUNCTION integrations.is_iso_countries(text[]), integrations.is_iso_currencies(text[]) TO PUBLIC;

CREATE TABLE public.integration_providers (
    provider             text PRIMARY KEY CHECK (provider ~ '^[a-z][a-z0-9_]{1,62}$'),
    display_name         text NOT NULL CHECK (display_name <> ''),
    category             text NOT NULL CHECK (category IN ('payment', 'bnpl', 'communication', 'logistics', 'cloud',
                                                           'commerce', 'email', 'ai_avatar', 'blog', 'social', 'devtools')),
    website              text CHECK (integrations.is_valid_http_url(website)),
    docs_url             text CHECK (integrations.is_valid_http_url(docs_url)),
    api_base_urls        text[] NOT NULL DEFAULT '{}',
    auth_methods         text[] NOT NULL DEFAULT '{}'
                         CHECK (auth_methods <@ ARRAY['api_key', 'bearer_token', 'basic_auth', 'oauth2']),
    is_mena_provider     boolean NOT NULL DEFAULT false,
    supported_countries  text[] NOT NULL DEFAULT '{}' CHECK (integrations.is_iso_countries(supported_countries)),
    supported_currencies text[] NOT NULL DEFAULT '{}' CHECK (integrations.is_iso_currencies(supported_currencies)),
    primary_locale       text NOT NULL DEFAULT 'en' CHECK (primary_locale IN ('ar', 'en')),
    payment_capabilities text[] NOT NULL DEFAULT '{}',
    payment_methods      text[] NOT NULL DEFAULT '{}',
    -- How the provider signs webhooks; the webhook layer verifies by this.
    webhook_signing      text NOT NULL DEFAULT 'unverified'
                         CHECK (webhook_signing IN ('none', 'unverified', 'hmac_sha256_hex', 'hmac_sha256_base64',
                                                    'stripe_v1', 'paymob_hmac_sha512', 'tap_hashstring', 'jwt_hs256',
                                                    'static_header', 'shared_secret_token', 'aes_256_gcm_body')),
    webhook_signature_header text,
    status               text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'defunct')),
    -- MENA providers first, then by this, then by key.
    sort_order           integer NOT NULL DEFAULT 100,
    notes                text,
    sources              text,
    -- Rows this file inserts; pg_dump carries only the others (below).
    builtin              boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- Seed 003 calls the display name `name` (its own check query selects it).
    name                 text GENERATED ALWAYS AS (display_name) STORED,
    -- What the seed kinds' tables reference: their providers are data.
    UNIQUE (provider, category)
);
COMMENT ON TABLE public.integration_providers IS
    'Provider registry: one row per provider (payment, BNPL, communication, logistics, cloud, commerce, ...), with where it operates, what it supports and how it signs webhooks. MENA providers first.';
COMMENT ON COLUMN public.integration_providers.supported_countries IS 'ISO 3166-1 alpha-2 codes where the provider is confirmed to operate';
COMMENT ON COLUMN public.integration_providers.supported_currencies IS 'ISO 4217 codes the provider is confirmed to settle';
COMMENT ON COLUMN public.integration_providers.primary_locale IS '''ar'' for MENA providers, ''en'' otherwise';
COMMENT ON COLUMN public.integration_providers.payment_capabilities IS 'one_time, refunds, void, auth_capture, tokenization, recurring, 3ds, payouts, split, webhooks, bnpl, checkout_session, disputes, invoices, in_store, installments';
COMMENT ON COLUMN public.integration_providers.payment_methods IS 'mada, knet, benefit, naps, omannet, fawry, meeza, valu, apple_pay, google_pay, samsung_pay, stc_pay, card, bnpl, wallets, kiosk, sadad';
COMMENT ON COLUMN public.integration_providers.name IS 'The display name, under the column name seed 003 uses';
COMMENT ON COLUMN public.integration_providers.notes IS 'What the research could not confirm (left out of the arrays above)';
-- Containment (@>) on the arrays is what get_payment_providers_by_capability asks.
CREATE INDEX integration_providers_capabilities_idx ON public.integration_providers USING gin (payment_capabilities);
CREATE INDEX integration_providers_countries_idx ON public.integration_providers USING gin (supported_countries);
CREATE INDEX integration_providers_currencies_idx ON public.integration_providers USING gin (supported_currencies);
CREATE INDEX integration_providers_order_idx ON public.integration_providers (is_mena_provider DESC, sort_order, provider);
CREATE TRIGGER integration_providers_updated_at BEFORE UPDATE ON public.integration_providers
    FOR EACH ROW EXECUTE FUNCTION integrations.touch_updated_at();

-- Public knowledge: every role may read it; only the extension's functions and
-- privileged roles write it.
ALTER TABLE public.integration_providers ENABLE ROW LEVEL SECURITY;
CREATE POLICY read_all ON public.integration_providers FOR SELECT USING (true);
CREATE POLICY admin_write ON public.integration_providers FOR ALL TO integrations_admin USING (true) WITH CHECK (true);
REVOKE ALL ON public.integration_providers FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON public.integration_providers TO anon, authenticated, service_role, integrations_admin;
GRANT INSERT, UPDATE ON public.integration_providers TO service_role, integrations_admin;

INSERT INTO public.integration_providers
    (provider, display_name, category, website, docs_url, api_base_urls, auth_methods, is_mena_provider,
     supported_countries, supported_currencies, primary_locale, payment_capabilities, payment_methods,
     webhook_signing, webhook_signature_header, status, sort_order, notes, sources)
VALUES
('tap_payments', 'Tap Payments', 'payment', 'https://www.tap.company', 'https://developers.tap.company',
 '{https://api.tap.company/v2}', '{bearer_token}', true,
 '{AE,BH,KW,OM,QA,SA}', '{AED,BHD,EGP,EUR,GBP,KWD,OMR,QAR,SAR,USD}', 'ar',
 '{3ds,auth_capture,one_time,refunds,tokenization,webhooks}', '{apple_pay,benefit,card,fawry,google_pay,knet,mada,naps}',
 'tap_hashstring', 'hashstring', 'active', 10,
 'EG, JO, LB listed by a connector, onboarding unverified; payouts, OmanNet and STC Pay unverified.',
 'developers.tap.company/reference; developers.tap.company/docs'),
('paymob', 'Paymob', 'payment', 'https://paymob.com', 'https://developers.paymob.com',
 '{https://accept.paymob.com,https://ksa.paymob.com,https://uae.paymob.com,https://oman.paymob.com,https://pakistan.paymob.com}',
 '{api_key}', true,
 '{AE,EG,OM,PK,SA}', '{AED,EGP,OMR,PKR,SAR}', 'ar',
 '{3ds,auth_capture,one_time,payouts,recurring,refunds,split,tokenization,void,webhooks}',
 '{apple_pay,bnpl,card,kiosk,mada,omannet,stc_pay,valu,wallets}',
 'paymob_hmac_sha512', 'hmac', 'active', 20,
 'HMAC-SHA512 over 20 ordered fields, sent as the hmac query parameter. Meeza unverified.',
 'developers.paymob.com; odoo.com payment_providers/paymob'),
('tabby', 'Tabby', 'bnpl', 'https://tabby.ai', 'https://docs.tabby.ai',
 '{https://api.tabby.ai,https://api.tabby.sa}', '{bearer_token}', true,
 '{AE,KW,SA}', '{AED,KWD,SAR}', 'ar',
 '{auth_capture,bnpl,checkout_session,disputes,refunds,webhooks}', '{apple_pay,bnpl,card,knet,mada}',
 'static_header', NULL, 'active', 30,
 'Webhooks carry an optional merchant-defined static header, no HMAC. BH, QA only on consumer help pages (unverified).',
 'docs.tabby.ai/api-reference; docs.tabby.sa/pay-in-4-custom-integration/webhooks'),
('tamara', 'Tamara', 'bnpl', 'https://tamara.co', 'https://docs.tamara.co',
 '{https://api.tamara.co}', '{bearer_token}', true,
 '{AE,SA}', '{AED,SAR}', 'ar',
 '{auth_capture,bnpl,checkout_session,disputes,in_store,refunds,void,webhooks}', '{bnpl}',
 'jwt_hs256', 'tamaraToken', 'active', 40,
 'Notification token is an HS-signed JWT (tamaraToken query parameter and Authorization header). KW, BH, OM and their currencies unverified.',
 'docs.tamara.co/docs/direct-quick-start-guide; docs.tamara.co/docs/webhook-subscription'),
('moyasar', 'Moyasar', 'payment', 'https://moyasar.com', 'https://docs.moyasar.com',
 '{https://api.moyasar.com/v1}', '{basic_auth}', true,
 '{SA}', '{AED,BHD,KWD,QAR,SAR,USD}', 'ar',
 '{3ds,auth_capture,invoices,one_time,recurring,refunds,tokenization,void,webhooks}',
 '{apple_pay,card,mada,samsung_pay,stc_pay}',
 'shared_secret_token', NULL, 'active', 50,
 'Settlement always in SAR; other currencies for aggregation merchants. Payouts unverified.',
 'docs.moyasar.com/api/api-introduction; docs.moyasar.com/guides/dashboard/setting-up-webhooks'),
('paytabs', 'PayTabs', 'payment', 'https://paytabs.com', 'https://docs.paytabs.com',
 '{https://secure.paytabs.sa,https://secure.paytabs.com,https://secure-egypt.paytabs.com}', '{api_key}', true,
 '{AE,EG,IQ,JO,KW,MA,OM,QA,SA}', '{}', 'ar',
 '{3ds,installments,one_time,payouts,recurring,refunds,tokenization,webhooks}',
 '{apple_pay,bnpl,card,knet,mada,meeza,omannet,samsung_pay,stc_pay,valu}',
 'hmac_sha256_hex', 'Signature', 'active', 60,
 'Multi-currency; the per-region currency set is unverified, so none is listed. Benefit, Google Pay, Fawry unverified.',
 'docs.paytabs.com; support.paytabs.com'),
('hyperpay', 'HyperPay', 'payment', 'https://www.hyperpay.com', NULL,
 '{https://eu-prod.oppwa.com/v1}', '{bearer_token}', true,
 '{SA}', '{SAR}', 'ar',
 '{3ds,auth_capture,one_time,refunds,tokenization,webhooks}',
 '{apple_pay,bnpl,card,google_pay,mada,sadad,samsung_pay,stc_pay,valu}',
 'aes_256_gcm_body', 'X-Authentication-Tag', 'active', 70,
 'Webhook bodies are AES-256-GCM encrypted (X-Initialization-Vector, X-Authentication-Tag), not HMAC-signed. AE, EG, JO, BH unverified.',
 'HyperpayOpenSource/laravel-package; HyperpayOpenSource/Magento-2-Plugin'),
('unifonic', 'Unifonic', 'communication', 'https://www.unifonic.com', 'https://docs.unifonic.com',
 '{https://el.cloud.unifonic.com/rest}', '{api_key}', true,
 '{SA}', '{}', 'ar', '{}', '{}', 'unverified', NULL, 'active', 110,
 'SMS, WhatsApp, voice. Countries beyond SA unverified.',
 'docs.unifonic.com/docs/sending-your-first-sms-via-unifonic-api'),
('infobip', 'Infobip', 'communication', 'https://www.infobip.com', 'https://www.infobip.com/docs',
 '{}', '{api_key,basic_auth,oauth2}', true,
 '{}', '{}', 'ar', '{}', '{}', 'unverified', NULL, 'active', 120,
 'Omnichannel CPaaS (SMS, WhatsApp, RCS, Viber, email); global, MENA specifics unverified. Base URL is per account.',
 'infobip.com/docs/developer-resources'),
('aramex', 'Aramex', 'logistics', 'https://www.aramex.com', NULL,
 '{https://ws.aramex.net/ShippingAPI.V2}', '{}', true,
 '{}', '{}', 'ar', '{}', '{}', 'unverified', NULL, 'active', 210,
 'Credentials travel in the request body (ClientInfo). Global network; country list unverified.',
 'AfterShip Aramex developer guide'),
('smsa_express', 'SMSA Express', 'logistics', 'https://www.smsaexpress.com', NULL,
 '{https://ecomapis.smsaexpress.com}', '{api_key}', true,
 '{SA}', '{SAR}', 'ar', '{}', '{}', 'unverified', NULL, 'active', 220,
 'GCC coverage unverified.', 'packagist haniusif/smsaexpress'),
('fetchr', 'Fetchr', 'logistics', NULL, NULL,
 '{}', '{}', true,
 '{}', '{}', 'ar', '{}', '{}', 'none', NULL, 'defunct', 230,
 'Insolvent in October 2021 (formerly AE, SA). Kept for history; not offered.',
 'wamda.com/en/2021/10/fetchr-risk-liquidation'),
('aws_me', 'Amazon Web Services (Middle East regions)', 'cloud', 'https://aws.amazon.com', NULL,
 '{}', '{}', true,
 '{AE,BH}', '{}', 'ar', '{}', '{}', 'none', NULL, 'active', 310,
 'Regions me-south-1 (Bahrain) and me-central-1 (UAE).', 'docs.aws.amazon.com'),
('azure_me', 'Microsoft Azure (Middle East regions)', 'cloud', 'https://azure.microsoft.com', NULL,
 '{}', '{}', true,
 '{AE,QA}', '{}', 'ar', '{}', '{}', 'none', NULL, 'active', 320,
 'Regions uaenorth, uaecentral (UAE) and qatarcentral.', 'learn.microsoft.com/azure/reliability/regions-list'),
('gcp_me', 'Google Cloud (Middle East regions)', 'cloud', 'https://cloud.google.com', NULL,
 '{}', '{}', true,
 '{QA,SA}', '{}', 'ar', '{}', '{}', 'none', NULL, 'active', 330,
 'Regions me-central1 (Doha) and me-central2 (Dammam).', 'cloud.google.com'),
('checkout_com', 'Checkout.com', 'payment', 'https://www.checkout.com', 'https://www.checkout.com/docs',
 '{https://api.checkout.com}', '{bearer_token,oauth2}', false,
 '{AE,BH,KW,QA,SA}', '{BHD}', 'en',
 '{3ds,auth_capture,bnpl,one_time,refunds,tokenization,void,webhooks}',
 '{apple_pay,benefit,bnpl,card,knet,mada,naps}',
 'hmac_sha256_hex', 'Cko-Signature', 'active', 400,
 'Countries are those of its MENA payment methods; merchant onboarding countries and most currencies unverified.',
 'checkout.com/docs/payments/add-payment-methods'),
('stripe', 'Stripe', 'payment', 'https://stripe.com', 'https://docs.stripe.com',
 '{https://api.stripe.com/v1}', '{api_key,bearer_token,basic_auth}', false,
 '{AE}', '{}', 'en',
 '{3ds,one_time,payouts,recurring,refunds,tokenization,webhooks}', '{apple_pay,card,google_pay}',
 'stripe_v1', 'Stripe-Signature', 'active', 410,
 'UAE accounts supported; SA, AED settlement, mada and KNET unverified.',
 'docs.stripe.com/api/authentication; support.stripe.com'),
-- the other seeds' providers
('shopify', 'Shopify', 'commerce', 'https://www.shopify.com', 'https://shopify.dev', '{}', '{api_key,oauth2}', false,
 '{}', '{}', 'en', '{}', '{}', 'hmac_sha256_base64', 'X-Shopify-Hmac-Sha256', 'active', 500, NULL, 'seed 002'),
('circuly', 'Circuly', 'commerce', 'https://circuly.io', NULL, '{https://api.circuly.io}', '{bearer_token}', false,
 '{}', '{}', 'en', '{}', '{}', 'unverified', NULL, 'active', 510, NULL, 'seed 002'),
('firmhouse', 'Firmhouse', 'commerce', 'https://www.firmhouse.com', NULL, '{}', '{api_key}', false,
 '{}', '{}', 'en', '{}', '{}', 'unverified', NULL, 'active', 520, NULL, 'seed 002'),
('mailerlite', 'MailerLite', 'email', 'https://www.mailerlite.com', NULL, '{https://connect.mailerlite.com/api}', '{bearer_token}', false,
 '{}', '{}', 'en', '{}', '{}', 'unverified', NULL, 'active', 600, NULL, 'seeds 000/001'),
('mailchimp', 'Mailchimp', 'email', 'https://mailchimp.com', NULL, '{}', '{api_key,oauth2}', false,
 '{}', '{}', 'en', '{}', '{}', 'unverified', NULL, 'active', 610, NULL, 'seeds 000/001'),
('brevo', 'Brevo', 'email', 'https://www.brevo.com', NULL, '{https://api.brevo.com/v3}', '{api_key}', false,
 '{}', '{}', 'en', '{}', '{}', 'unverified', NULL, 'active', 620, NULL, 'seeds 000/001'),
('heygen', 'HeyGen', 'ai_avatar', 'https://www.heygen.com', NULL, '{https://api.heygen.com}', '{api_key}', false,
 '{}', '{}', 'en', '{}', '{}', 'unverified', NULL, 'active', 700, NULL, 'seed 001'),
('wordpress', 'WordPress', 'blog', 'https://wordpress.org', NULL, '{}', '{basic_auth,oauth2}', false,
 '{}', '{}', 'en', '{}', '{}', 'none', NULL, 'active', 800, 'Application passwords over HTTP Basic, per site.', 'seeds 000/001'),
('wix', 'Wix', 'blog', 'https://www.wix.com', NULL, '{https://www.wixapis.com}', '{api_key,oauth2}', false,
 '{}', '{}', 'en', '{}', '{}', 'unverified', NULL, 'active', 810, NULL, 'seeds 000/001'),
('upload_post', 'Upload-Post', 'social', 'https://www.upload-post.com', NULL, '{}', '{api_key}', false,
 '{}', '{}', 'en', '{}', '{}', 'unverified', NULL, 'active', 900, NULL, 'seeds 000/001'),
('github', 'GitHub', 'devtools', 'https://github.com', 'https://docs.github.com', '{https://api.github.com}', '{bearer_token,oauth2}', false,
 '{}', '{}', 'en', '{}', '{}', 'hmac_sha256_hex', 'X-Hub-Signature-256', 'active', 1000, NULL, 'seed 003'),
('supabase', 'Supabase', 'devtools', 'https://supabase.com', 'https://supabase.com/docs', '{https://api.supabase.com}', '{bearer_token,oauth2}', false,
 '{}', '{}', 'en', '{}', '{}', 'unverified', NULL, 'active', 1010, NULL, 'seed 003');

UPDATE public.integration_providers SET builtin = true WHERE NOT builtin;

-- Rows the app adds are dumped; the built-in ones come back with CREATE
-- EXTENSION (so changes made to a built-in row are not in a dump).
SELECT pg_catalog.pg_extension_config_dump('public.integration_providers', 'WHERE NOT builtin');

CREATE FUNCTION public.get_payment_providers_by_capability(p_capability text, p_country text DEFAULT NULL, p_currency text DEFAULT NULL)
RETURNS SETOF public.integration_providers
LANGUAGE c STABLE SET search_path = pg_catalog, pg_temp ROWS 10
AS 'MODULE_PATHNAME', 'pgi_get_payment_providers_by_capability';
COMMENT ON FUNCTION public.get_payment_providers_by_capability(text, text, text) IS
    'Active providers offering payment capability p_capability (e.g. one_time, refunds, recurring, bnpl, payouts), optionally operating in ISO country p_country and settling ISO currency p_currency (case-insensitive); MENA providers first. 22023 for an empty capability or an unknown country or currency code.';
REVOKE ALL ON FUNCTION public.get_payment_providers_by_capability(text, text, text) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.get_payment_providers_by_capability(text, text, text) TO anon, authenticated, service_role, integrations_admin;

CREATE FUNCTION integrations.register_provider(
    p_provider text, p_display_name text, p_category text,
    p_website text DEFAULT NULL, p_docs_url text DEFAULT NULL, p_api_base_urls text[] DEFAULT NULL,
    p_auth_methods text[] DEFAULT NULL, p_is_mena_provider boolean DEFAULT false,
    p_supported_countries text[] DEFAULT NULL, p_supported_currencies text[] DEFAULT NULL,
    p_primary_locale text DEFAULT NULL, p_payment_capabilities text[] DEFAULT NULL,
    p_payment_methods text[] DEFAULT NULL, p_webhook_signing text DEFAULT NULL, p_sort_order integer DEFAULT NULL)
RETURNS text LANGUAGE c VOLATILE SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'pgi_register_provider';
COMMENT ON FUNCTION integrations.register_provider(text, text, text, text, text, text[], text[], boolean, text[], text[], text, text[], text[], text, integer) IS
    'Adds or replaces a provider in public.integration_providers; returns its key. Country and currency codes are upper-cased and checked against ISO 3166-1 alpha-2 and ISO 4217 (22023 naming the element otherwise); capabilities and methods are lower-cased. primary_locale defaults to ''ar'' for MENA providers. Privileged callers only.';
REVOKE ALL ON FUNCTION integrations.register_provider(text, text, text, text, text, text[], text[], boolean, text[], text[], text, text[], text[], text, integer) FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION integrations.register_provider(text, text, text, text, text, text[], text[], boolean, text[], text[], text, text[], text[], text, integer) TO service_role, integrations_admin;
