-- pg_integrations 0.7.0 -> 0.8.0: room on every page for a new version of
-- each row of the tables a re-save rewrites.
--
-- One file serves twice, like the ones before it: this upgrade script, and the
-- fresh install's last part (src/lib.rs).
--
-- A set_* re-save writes a new version of its integration row and of its
-- secret (src/pg/update.rs). A new version that fits on its page is a HOT
-- update: no index gets an entry. At fillfactor 70 a page has room for 43%
-- more versions, so re-saving every business in one transaction (a key
-- rotation, a bulk settings change) spilled the rest to other pages, each
-- with an entry in every index (six on a kind's table): measured, the index
-- inserts were 28% of a re-save. At 50 a page holds a second version of each
-- of its rows. Existing pages keep their fill until they are rewritten; new
-- and rewritten pages get the room.
ALTER TABLE public.ai_avatar_integrations SET (fillfactor = 50);
ALTER TABLE public.email_integrations SET (fillfactor = 50);
ALTER TABLE public.blog_integrations SET (fillfactor = 50);
ALTER TABLE integrations.secrets SET (fillfactor = 50);
