"""Schema steps 10 onward, frozen SQL text like the earlier steps; ``core/migrations.py`` lists every
step for both backends. Never edit a released step: add a new one."""

from __future__ import annotations

# The mailbox table's indexes, each kept for a query that uses it (see bench/README.md, bulk.py).
# Nothing reads mailboxes by postponed_until (a retry waits in test_job.not_before). SQLite needs
# nothing more: its indexes end with the row id, so each walks in (column, id) order, the grid's
# display order, and an UPDATE writes only the indexes of the columns it changes.
SCHEMA_0010 = r"""
DROP INDEX "mailbox_postponed_until";
"""

# PostgreSQL writes a new entry into every index of the mailbox table for every row a bulk action
# changes (each changes an indexed column, so no update is HOT), and its indexes keep equal values
# in no particular order of id. So: the grid's sort indexes become (column, id), which PostgreSQL
# walks for a sort's first screen instead of sorting the whole table (the unique addresses need no
# id to break ties, only the id included to be read without the table), and the enabled sort gets
# the expression it sorts by (with its columns included, so the whole order reads from the index
# alone); the views' small sets (forward, pending, failed, disabled) and the queues' and users'
# mailboxes become partial indexes, which a row outside them does not enter. The index on active
# stays whole: the Active view, the default one, counts from it (a scan of the table without it).
POSTGRES_SCHEMA_0010 = SCHEMA_0010 + r"""
DROP INDEX "mailbox_email";
CREATE UNIQUE INDEX "mailbox_email" ON "mailbox" ("email") INCLUDE ("id");
DROP INDEX "mailbox_name";
CREATE INDEX "mailbox_name" ON "mailbox" ("name" COLLATE "nocase", "id");
DROP INDEX "mailbox_regarding";
CREATE INDEX "mailbox_regarding" ON "mailbox" ("regarding", "id");
DROP INDEX "mailbox_profile_id";
CREATE INDEX "mailbox_profile_id" ON "mailbox" ("profile_id", "id");
DROP INDEX "mailbox_approval";
CREATE INDEX "mailbox_approval" ON "mailbox" ("approval", "id");
DROP INDEX "mailbox_overall_status";
CREATE INDEX "mailbox_overall_status" ON "mailbox" ("overall_status", "id");
DROP INDEX "mailbox_incoming_status";
CREATE INDEX "mailbox_incoming_status" ON "mailbox" ("incoming_status", "id");
DROP INDEX "mailbox_outgoing_status";
CREATE INDEX "mailbox_outgoing_status" ON "mailbox" ("outgoing_status", "id");
DROP INDEX "mailbox_act_status";
CREATE INDEX "mailbox_act_status" ON "mailbox" ("act_status", "id");
DROP INDEX "mailbox_incoming_method";
CREATE INDEX "mailbox_incoming_method" ON "mailbox" ("incoming_method", "id");
DROP INDEX "mailbox_outgoing_method";
CREATE INDEX "mailbox_outgoing_method" ON "mailbox" ("outgoing_method", "id");
DROP INDEX "mailbox_act_method";
CREATE INDEX "mailbox_act_method" ON "mailbox" ("act_method", "id");
DROP INDEX "mailbox_test_completed_on";
CREATE INDEX "mailbox_test_completed_on" ON "mailbox" ("test_completed_on" NULLS FIRST, "id");
DROP INDEX "mailbox_created_on";
CREATE INDEX "mailbox_created_on" ON "mailbox" ("created_on", "id");
DROP INDEX "mailbox_enabled";
CREATE INDEX "mailbox_enabled" ON "mailbox" (("incoming_enabled" + "outgoing_enabled" + "act_enabled"), "id")
  INCLUDE ("incoming_enabled", "outgoing_enabled", "act_enabled");
CREATE INDEX "mailbox_disabled" ON "mailbox" ("id")
  WHERE "incoming_enabled" = 0 AND "outgoing_enabled" = 0 AND "act_enabled" = 0;
DROP INDEX "mailbox_is_forward";
CREATE INDEX "mailbox_is_forward" ON "mailbox" ("id") WHERE "is_forward" = 1;
DROP INDEX "mailbox_approval_active";
CREATE INDEX "mailbox_approval_active" ON "mailbox" ("active") WHERE "approval" = 'pending';
DROP INDEX "mailbox_overall_status_active";
CREATE INDEX "mailbox_overall_status_active" ON "mailbox" ("active") WHERE "overall_status" = 'failure';
DROP INDEX "mailbox_user_id";
CREATE UNIQUE INDEX "mailbox_user_id" ON "mailbox" ("user_id") WHERE "user_id" IS NOT NULL;
DROP INDEX "mailbox_queue_id";
CREATE UNIQUE INDEX "mailbox_queue_id" ON "mailbox" ("queue_id") WHERE "queue_id" IS NOT NULL;
"""

# The Activities screen and the Sync monitor at a million activities: the Incoming and Outgoing views
# (and their counts) walk (direction, id) newest first, where SQLite sorted every row of the direction
# through (direction, message_id); the monitor's messages per minute read the last hour's rows of
# (direction, created_on), where it walked every incoming activity.
SCHEMA_0011 = r"""
CREATE INDEX "email_activity_direction_id" ON "email_activity" ("direction", "id");
CREATE INDEX "email_activity_direction_created_on" ON "email_activity" ("direction", "created_on");
"""

# OAuth2 that fetches its own tokens (issue 13): a profile's provider (microsoft365, google,
# generic), tenant, client id, issuer URL and scope; which kind of client credential is in the
# keyring (client_secret, certificate, service_account; NULL: none) and the endpoint it was set or
# confirmed for (R34: the profile's endpoint and its OAuth settings, see endpoint_binding.py).
SCHEMA_0012 = r"""
ALTER TABLE "profile" ADD COLUMN "oauth_provider" VARCHAR(255);
ALTER TABLE "profile" ADD COLUMN "oauth_tenant" TEXT;
ALTER TABLE "profile" ADD COLUMN "oauth_client_id" TEXT;
ALTER TABLE "profile" ADD COLUMN "oauth_issuer" TEXT;
ALTER TABLE "profile" ADD COLUMN "oauth_scope" TEXT;
ALTER TABLE "profile" ADD COLUMN "oauth_credential" VARCHAR(255);
ALTER TABLE "profile" ADD COLUMN "oauth_credential_bound_to" TEXT;
"""
POSTGRES_SCHEMA_0012 = SCHEMA_0012

# Step 13: what R16 counts, whatever failed (a test or processing, each direction): the last failure
# of each mailbox's direction that has not passed since; and whether a POP3 message a mailbox saw
# was processed (so deleted when the mailbox deletes, also by a later cycle, R28) or passed over.
# Keys seen before this step are taken as passed over: nothing is deleted that might not have been read.
SCHEMA_0013 = r"""
CREATE TABLE "mailbox_failure" ("id" INTEGER NOT NULL PRIMARY KEY, "mailbox_id" INTEGER NOT NULL, "profile_id" INTEGER NOT NULL, "direction" VARCHAR(255) NOT NULL, "activity" VARCHAR(255) NOT NULL, "failed_on" DATETIME NOT NULL, FOREIGN KEY ("mailbox_id") REFERENCES "mailbox" ("id") ON DELETE CASCADE, FOREIGN KEY ("profile_id") REFERENCES "profile" ("id") ON DELETE CASCADE);
CREATE UNIQUE INDEX "mailbox_failure_mailbox_direction" ON "mailbox_failure" ("mailbox_id", "direction");
CREATE INDEX "mailbox_failure_profile_failed_on" ON "mailbox_failure" ("profile_id", "failed_on");
ALTER TABLE "sync_seen_uidl" ADD COLUMN "processed" INTEGER NOT NULL DEFAULT 0;
"""

# Step 14: the UIDs the last commit of a deleting mailbox recorded as processed and that are not yet
# deleted or moved (a JSON list; NULL when none), so that a cycle cut short between its commit and
# its expunge has exactly those deleted by the next one (R28).
SCHEMA_0014 = r"""
ALTER TABLE "sync_checkpoint" ADD COLUMN "delete_pending" TEXT;
"""

# Step 15: a mailbox's own OAuth2 authorization (``mailbox authorize``, issue 13): when and by whom it
# was authorized, when its refresh token can expire (the provider's refresh_token_expires_in, else
# the organisation's oauth_refresh_days from the last refresh), its last refresh and that refresh's
# error, and when the expiry warning was raised; the organisation's lifetime of a refresh token
# whose provider does not say, and how many days before expiry the warning comes. The tokens
# themselves are in the keyring only.
SCHEMA_0015 = r"""
CREATE TABLE "mailbox_authorization" ("id" INTEGER NOT NULL PRIMARY KEY, "mailbox_id" INTEGER NOT NULL, "authorized_on" DATETIME NOT NULL, "authorized_by" VARCHAR(255) NOT NULL, "refresh_expires_on" DATETIME, "last_refresh_on" DATETIME, "last_refresh_error" TEXT, "warned_on" DATETIME, FOREIGN KEY ("mailbox_id") REFERENCES "mailbox" ("id") ON DELETE CASCADE);
CREATE UNIQUE INDEX "mailbox_authorization_mailbox_id" ON "mailbox_authorization" ("mailbox_id");
CREATE INDEX "mailbox_authorization_refresh_expires_on" ON "mailbox_authorization" ("refresh_expires_on");
ALTER TABLE "org_settings" ADD COLUMN "oauth_refresh_days" INTEGER NOT NULL DEFAULT 90;
ALTER TABLE "org_settings" ADD COLUMN "oauth_expiry_warning_days" INTEGER NOT NULL DEFAULT 7;
"""

# Step 16: what the console shows of a profile's OAuth2 tokens, which live only in the memory of the
# process that fetched them: when one was last obtained and until when it is valid, the last failure
# to get one (code, sentence, when), and the provider, tenant and client id they were for. One row
# per profile, written by whichever process fetched (at most about once a minute each); never a token.
SCHEMA_0016 = r"""
CREATE TABLE "oauth_token_state" ("id" INTEGER NOT NULL PRIMARY KEY, "profile_id" INTEGER NOT NULL, "provider" VARCHAR(255) NOT NULL, "tenant" TEXT, "client_id" TEXT, "obtained_on" DATETIME, "expires_on" DATETIME, "error_code" VARCHAR(255), "error_text" TEXT, "error_on" DATETIME, FOREIGN KEY ("profile_id") REFERENCES "profile" ("id") ON DELETE CASCADE);
CREATE UNIQUE INDEX "oauth_token_state_profile_id" ON "oauth_token_state" ("profile_id");
"""

# The same statements with PostgreSQL's types.
POSTGRES_SCHEMA_0013 = (
    SCHEMA_0013.replace('"id" INTEGER NOT NULL PRIMARY KEY', '"id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY')
    .replace('_id" INTEGER', '_id" BIGINT').replace("DATETIME", "TIMESTAMP"))

POSTGRES_SCHEMA_0015 = (
    SCHEMA_0015.replace('"id" INTEGER NOT NULL PRIMARY KEY', '"id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY')
    .replace('_id" INTEGER', '_id" BIGINT').replace("DATETIME", "TIMESTAMP"))

POSTGRES_SCHEMA_0016 = (
    SCHEMA_0016.replace('"id" INTEGER NOT NULL PRIMARY KEY', '"id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY')
    .replace('_id" INTEGER', '_id" BIGINT').replace("DATETIME", "TIMESTAMP"))

# Step 17: the mailboxes a backward jump of the clock left a retry or a last attempt ahead for are
# found from an index (jobs/clock_jumps.py), where bringing them back read the whole mailbox table
# twice inside the lease renewal's write transaction (at 1,000,000 mailboxes 0.5 s of its 1.8 s on
# SQLite, 1.9 s of 3.3 s on PostgreSQL under load; bench/README.md, clock_jumps.py). Both indexes
# are partial and hold few rows: the mailboxes waiting for a retry, and those whose last attempt is
# not their last test (the two are written together, and the test has its index). A row outside
# them has no entry, so PostgreSQL's bulk changes of mailboxes, which add an entry to every index a
# changed row is in, write no more than before.
SCHEMA_0017 = r"""
CREATE INDEX "mailbox_waiting_retry" ON "mailbox" ("postponed_until") WHERE "postponed_until" IS NOT NULL;
CREATE INDEX "mailbox_test_attempt_apart" ON "mailbox" ("test_last_attempted_on") WHERE "test_last_attempted_on" IS NOT "test_completed_on";
"""

POSTGRES_SCHEMA_0017 = SCHEMA_0017.replace('"test_last_attempted_on" IS NOT "test_completed_on"',
                                          '"test_last_attempted_on" IS DISTINCT FROM "test_completed_on"')

# Step 18: what a backward jump of the clock left ahead in the sync status and the owners' notices is
# found from indexes (jobs/clock_jumps.py), where bringing it back read both tables whole inside the
# lease renewal's write transaction (the sync status: 0.19-0.21 s at 1,000,000 mailboxes;
# bench/README.md, clock_jumps.py). A claim's end is held only while a worker holds the row: the
# partial index of the claimed rows (the mailboxes being cycled now, few) finds them, and also
# serves the worker's own statements by its name (its claims read back, renewed and released),
# which read the table whole. The sync status's other moments written as "now" are found by the
# latest of them, one entry a row: an index of each would be five. SQLite's max() of several
# values is NULL when one is, hence the empty text for a moment never written (every moment sorts
# after it). The owners' notices: one row per profile or mailbox emailed about, written at most
# once an hour each. The alerts dismissed, by when (those not dismissed have no entry): every alert
# raised, a test's "connected" among them, was read whole.
SCHEMA_0018 = r"""
CREATE INDEX "sync_status_claimed" ON "sync_status" ("worker") WHERE "worker" IS NOT NULL;
CREATE INDEX "sync_status_latest_moment" ON "sync_status" ((max(coalesce("last_outgoing_success", ''), coalesce("stale_alerted_on", ''), coalesce("last_cycle_started", ''), coalesce("last_cycle_finished", ''), coalesce("enabled_since", ''))));
CREATE INDEX "owner_notice_sent_on" ON "owner_notice" ("sent_on");
CREATE INDEX "alert_dismissed_on" ON "alert" ("dismissed_on") WHERE "dismissed_on" IS NOT NULL;
"""

POSTGRES_SCHEMA_0018 = SCHEMA_0018.replace(
    """(max(coalesce("last_outgoing_success", ''), coalesce("stale_alerted_on", ''), coalesce("last_cycle_started", ''), coalesce("last_cycle_finished", ''), coalesce("enabled_since", '')))""",
    """(GREATEST("last_outgoing_success", "stale_alerted_on", "last_cycle_started", "last_cycle_finished", "enabled_since"))""")

# Step 19 (PostgreSQL): approving rewrote an entry in every index of the mailbox table. An UPDATE
# that changes an indexed column writes the new row version into each of the table's 28 indexes;
# one that changes no indexed column, with room on the row's page, is a heap-only (HOT) update and
# writes none. So the approval leaves the mailbox table's indexes for a narrow table holding the
# mailboxes that are not approved (pending, rejected, empty: the few), kept by triggers alone; the
# table is rewritten with a fifth of each page free for new row versions. Approving the 81,817
# pending mailboxes among 1,000,000: 10.2 s before, 2.8 s after (SQLite 1.5 s; bench/README.md,
# "Schema step 19"). The narrow table also holds ``active``, so the Pending Approval view is counted
# from it alone. One statement trigger keeps it for every UPDATE of the mailbox table (a trigger with
# a transition table cannot name columns): about 10 us a statement. No foreign key: its check would
# cost every new mailbox a lookup; the delete trigger takes a removed mailbox's row away. SQLite
# writes only the indexes of the columns an UPDATE changes, so it keeps its schema.
SCHEMA_0019 = ""

POSTGRES_SCHEMA_0019 = r"""
CREATE TABLE "mailbox_unapproved" (
  "mailbox_id" BIGINT NOT NULL PRIMARY KEY,
  "approval" VARCHAR(255) NOT NULL,
  "active" INTEGER NOT NULL);
INSERT INTO "mailbox_unapproved" ("mailbox_id", "approval", "active")
  SELECT "id", "approval", "active" FROM "mailbox" WHERE "approval" <> 'approved';
CREATE INDEX "mailbox_unapproved_approval" ON "mailbox_unapproved" ("approval", "mailbox_id");
CREATE INDEX "mailbox_unapproved_pending" ON "mailbox_unapproved" ("mailbox_id") WHERE "approval" = 'pending' AND "active" = 1;
REVOKE INSERT, UPDATE, DELETE ON "mailbox_unapproved" FROM mbxtui_global_admin, mbxtui_service_admin, mbxtui_system_admin;
CREATE FUNCTION "mbxtui_unapproved_added"() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  INSERT INTO "mailbox_unapproved" ("mailbox_id", "approval", "active")
    SELECT "id", "approval", "active" FROM added WHERE "approval" <> 'approved';
  RETURN NULL;
END
$$;
CREATE FUNCTION "mbxtui_unapproved_changed"() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  DELETE FROM "mailbox_unapproved" u USING changed c WHERE u."mailbox_id" = c."id" AND c."approval" = 'approved';
  INSERT INTO "mailbox_unapproved" ("mailbox_id", "approval", "active")
    SELECT "id", "approval", "active" FROM changed WHERE "approval" <> 'approved'
    ON CONFLICT ("mailbox_id") DO UPDATE SET "approval" = EXCLUDED."approval", "active" = EXCLUDED."active"
    WHERE ("mailbox_unapproved"."approval", "mailbox_unapproved"."active") IS DISTINCT FROM (EXCLUDED."approval", EXCLUDED."active");
  RETURN NULL;
END
$$;
CREATE FUNCTION "mbxtui_unapproved_removed"() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  DELETE FROM "mailbox_unapproved" u USING removed r WHERE u."mailbox_id" = r."id";
  RETURN NULL;
END
$$;
-- A session's temporary tables come first in its search path: the functions write only mbxtui's
-- own table, whatever the session names like it.
DO $$
DECLARE
  function_name text;
BEGIN
  FOREACH function_name IN ARRAY ARRAY['"mbxtui_unapproved_added"()', '"mbxtui_unapproved_changed"()',
                                       '"mbxtui_unapproved_removed"()'] LOOP
    EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, %I, pg_temp', function_name, current_schema());
  END LOOP;
END
$$;
REVOKE ALL ON FUNCTION "mbxtui_unapproved_added"(), "mbxtui_unapproved_changed"(), "mbxtui_unapproved_removed"()
  FROM PUBLIC;
CREATE TRIGGER "mailbox_unapproved_insert" AFTER INSERT ON "mailbox" REFERENCING NEW TABLE AS added
  FOR EACH STATEMENT EXECUTE FUNCTION "mbxtui_unapproved_added"();
CREATE TRIGGER "mailbox_unapproved_update" AFTER UPDATE ON "mailbox" REFERENCING NEW TABLE AS changed
  FOR EACH STATEMENT EXECUTE FUNCTION "mbxtui_unapproved_changed"();
CREATE TRIGGER "mailbox_unapproved_delete" AFTER DELETE ON "mailbox" REFERENCING OLD TABLE AS removed
  FOR EACH STATEMENT EXECUTE FUNCTION "mbxtui_unapproved_removed"();
DROP INDEX "mailbox_approval";
DROP INDEX "mailbox_approval_active";
ALTER TABLE "mailbox" SET (fillfactor = 80);
CLUSTER "mailbox" USING "mailbox_pkey";
"""

# Two checks of the server's that ran once a row now run once a statement, or cost a row no call
# (PostgreSQL; SQLite's schema is unchanged: it has no roles, and its foreign key's check is an
# index lookup).
# - The approval triggers' condition, whether the acting role may approve, was a call of
#   mbxtui_is_approver() for every row: its pinned search path made it a function call that is
#   never inlined, about 3 us a row (0.4-0.6 s of approving 152,336 mailboxes, 0.3 s of importing
#   100,000). The condition now spells it out with built-in calls, resolved once when the trigger
#   is made (a session's search path cannot stand another function in), and the owner's check
#   comes last, so it runs only for a role that is neither group.
# - audit_record's foreign key checked each record alone (4.5 us a record: 0.7 s of approving
#   152,336 mailboxes, 0.45 s of importing 100,000 users). A statement trigger checks each
#   statement's distinct entries instead, locking them as the key did (so none is deleted before
#   the records commit), and a statement trigger on audit_entry deletes a deleted entry's records,
#   as the key's ON DELETE CASCADE did. Both run as the owner, as a foreign key's checks do: the
#   operators' roles may not lock or delete audit entries.
SCHEMA_0020 = ""

POSTGRES_SCHEMA_0020 = r"""
DROP TRIGGER "mailbox_approval_insert" ON "mailbox";
DROP TRIGGER "mailbox_approval_update" ON "mailbox";
CREATE TRIGGER "mailbox_approval_insert" BEFORE INSERT ON "mailbox"
  FOR EACH ROW WHEN (NOT pg_catalog.pg_has_role(current_user, 'mbxtui_global_admin', 'USAGE')
                     AND NOT pg_catalog.pg_has_role(current_user, 'mbxtui_service_admin', 'USAGE')
                     AND NOT "mbxtui_is_owner"(current_user))
  EXECUTE FUNCTION "mbxtui_check_approval"();
CREATE TRIGGER "mailbox_approval_update" BEFORE UPDATE OF "approval", "approved_by", "approved_on" ON "mailbox"
  FOR EACH ROW WHEN ((OLD."approval", OLD."approved_by", OLD."approved_on") IS DISTINCT FROM
                     (NEW."approval", NEW."approved_by", NEW."approved_on")
                     AND NOT pg_catalog.pg_has_role(current_user, 'mbxtui_global_admin', 'USAGE')
                     AND NOT pg_catalog.pg_has_role(current_user, 'mbxtui_service_admin', 'USAGE')
                     AND NOT "mbxtui_is_owner"(current_user))
  EXECUTE FUNCTION "mbxtui_check_approval"();
DROP FUNCTION "mbxtui_is_approver"();

ALTER TABLE "audit_record" DROP CONSTRAINT "audit_record_entry_id_fkey";
CREATE FUNCTION "mbxtui_audit_records_entries"() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
DECLARE
  named bigint;
  found bigint;
BEGIN
  SELECT count(DISTINCT "entry_id") INTO named FROM added;
  SELECT count(*) INTO found FROM (
    SELECT FROM "audit_entry" WHERE "id" IN (SELECT "entry_id" FROM added) FOR KEY SHARE) locked;
  IF found <> named THEN
    RAISE EXCEPTION 'an audit record names an audit entry that does not exist'
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  RETURN NULL;
END
$$;
CREATE FUNCTION "mbxtui_audit_entries_removed"() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  DELETE FROM "audit_record" r USING removed e WHERE r."entry_id" = e."id";
  RETURN NULL;
END
$$;
DO $$
BEGIN
  EXECUTE format('ALTER FUNCTION "mbxtui_audit_records_entries"() SET search_path = pg_catalog, %I, pg_temp',
                 current_schema());
  EXECUTE format('ALTER FUNCTION "mbxtui_audit_entries_removed"() SET search_path = pg_catalog, %I, pg_temp',
                 current_schema());
END
$$;
REVOKE ALL ON FUNCTION "mbxtui_audit_records_entries"(), "mbxtui_audit_entries_removed"() FROM PUBLIC;
CREATE TRIGGER "audit_record_entry" AFTER INSERT ON "audit_record" REFERENCING NEW TABLE AS added
  FOR EACH STATEMENT EXECUTE FUNCTION "mbxtui_audit_records_entries"();
CREATE TRIGGER "audit_entry_removed" AFTER DELETE ON "audit_entry" REFERENCING OLD TABLE AS removed
  FOR EACH STATEMENT EXECUTE FUNCTION "mbxtui_audit_entries_removed"();
"""
