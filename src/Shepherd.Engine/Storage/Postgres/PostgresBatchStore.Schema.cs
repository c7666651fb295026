using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

public sealed partial class PostgresBatchStore
{
    /// <summary>The schema version this code writes; a newer database is refused.</summary>
    public const int SchemaVersion = 7;

    /// <summary>Taken while migrating, so nodes starting together migrate once.</summary>
    private const long MigrationLock = 0x5368657068657264;

    /// <summary>
    /// The schema, one step per version: a database at version n runs the steps after n, in one
    /// transaction. (A property: as a field it would be set before the steps below it that are
    /// not constants.)
    /// </summary>
    private static string[] Migrations => [SchemaVersion1, SchemaVersion2, SchemaVersion3, SchemaVersion4, SchemaVersion5, SchemaVersion6, SchemaVersion7];

    /// <summary>Version 7: answers checked against what their requests asked for, asked again when they do not fit, and counted.</summary>
    private const string SchemaVersion7 = StoreSql.OutputSchema;

    /// <summary>Version 6: each tenant's ledger of realtime calls, by day.</summary>
    private const string SchemaVersion6 = StoreSql.SpendSchema;

    /// <summary>Version 5: how each batch uses the answer cache.</summary>
    private const string SchemaVersion5 = StoreSql.CacheUseSchema;

    /// <summary>Version 4: answers kept from an earlier run of an edited input, marked as such, and what they saved.</summary>
    private const string SchemaVersion4 = StoreSql.ReusedSchema;

    /// <summary>Version 3: the tier each item goes by, when a planned batch cut over to realtime, and what each tier answered.</summary>
    private const string SchemaVersion3 = StoreSql.TiersSchema;

    /// <summary>Version 2: the hash of the body an idempotency key was first used with.</summary>
    private const string SchemaVersion2 = """
        ALTER TABLE batches ADD COLUMN idempotency_sha256 text;
        """;

    /// <summary>
    /// Version 1: what the embedded store holds (batches, items and their bodies, results, files,
    /// native jobs) plus what nodes share: file contents in chunks, the nodes with their
    /// heartbeats and lanes, and roles held by lease. Times are Unix milliseconds. The partial
    /// indexes' predicates are the states the claims and releases name, written in as they write them.
    /// </summary>
    private static readonly string SchemaVersion1 = $$"""
        CREATE TABLE batches (
            seq bigserial UNIQUE,
            id text PRIMARY KEY,
            format integer NOT NULL DEFAULT 0,
            endpoint text,
            status text NOT NULL,
            ending text,
            source text,
            source_sha256 text,
            source_bytes bigint,
            created_at bigint NOT NULL,
            in_progress_at bigint,
            completed_at bigint,
            failed_at bigint,
            finalizing_at bigint,
            total bigint NOT NULL DEFAULT 0,
            succeeded bigint NOT NULL DEFAULT 0,
            failed bigint NOT NULL DEFAULT 0,
            cancelled bigint NOT NULL DEFAULT 0,
            expired bigint NOT NULL DEFAULT 0,
            input_tokens bigint NOT NULL DEFAULT 0,
            output_tokens bigint NOT NULL DEFAULT 0,
            cost_nanos bigint NOT NULL DEFAULT 0,
            unpriced bigint NOT NULL DEFAULT 0,
            budget_nanos bigint,
            budget_exceeded bigint NOT NULL DEFAULT 0,
            errors text,
            priority integer NOT NULL DEFAULT 1,
            expires_at bigint,
            cancelling_at bigint,
            cancelled_at bigint,
            expired_at bigint,
            owner text,
            door integer NOT NULL DEFAULT 0,
            needs_files boolean NOT NULL DEFAULT false,
            input_file_id text,
            completion_window text,
            metadata text,
            model text,
            output_file_id text,
            error_file_id text,
            idempotency_key text,
            mode integer NOT NULL DEFAULT 0,
            importer text
        );
        CREATE UNIQUE INDEX ux_batches_idempotency ON batches (owner, idempotency_key) NULLS NOT DISTINCT WHERE idempotency_key IS NOT NULL;
        CREATE INDEX ix_batches_owner ON batches (owner, door, seq);
        CREATE INDEX ix_batches_status ON batches (status);
        CREATE INDEX ix_batches_source ON batches (source, created_at);
        CREATE TABLE batch_models (
            batch_id text NOT NULL,
            model text NOT NULL,
            PRIMARY KEY (batch_id, model)
        );
        CREATE TABLE items (
            id bigserial PRIMARY KEY,
            batch_id text NOT NULL,
            line bigint NOT NULL,
            custom_id text NOT NULL,
            model text NOT NULL,
            state integer NOT NULL DEFAULT 0,
            priority integer NOT NULL DEFAULT 1,
            attempts integer NOT NULL DEFAULT 0,
            lease bigint NOT NULL DEFAULT 0,
            next_attempt_at bigint NOT NULL DEFAULT 0,
            lease_until bigint,
            leased_by text,
            last_error text
        );
        CREATE UNIQUE INDEX ux_items_custom_id ON items (batch_id, custom_id);
        CREATE UNIQUE INDEX ux_items_line ON items (batch_id, line);
        CREATE INDEX ix_items_queued ON items (model, priority DESC, next_attempt_at, id) WHERE state = {{(int)ItemState.Queued}};
        CREATE INDEX ix_items_leased ON items (leased_by) WHERE state = {{(int)ItemState.Leased}};
        CREATE TABLE item_bodies (
            item_id bigint PRIMARY KEY,
            body bytea NOT NULL
        );
        CREATE TABLE results (
            item_id bigint PRIMARY KEY,
            status_code integer,
            request_id text,
            body bytea,
            error_code text,
            error_message text,
            input_tokens integer NOT NULL,
            output_tokens integer NOT NULL,
            cached_tokens integer NOT NULL DEFAULT 0,
            cost_nanos bigint NOT NULL DEFAULT 0,
            latency_ms integer NOT NULL DEFAULT 0,
            finished_at bigint NOT NULL
        );
        CREATE TABLE files (
            seq bigserial UNIQUE,
            id text PRIMARY KEY,
            owner text,
            filename text NOT NULL,
            purpose text NOT NULL,
            bytes bigint NOT NULL,
            created_at bigint NOT NULL,
            batch_id text
        );
        CREATE INDEX ix_files_owner ON files (owner, purpose, seq);
        CREATE TABLE file_chunks (
            file_id text NOT NULL,
            n integer NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (file_id, n)
        );
        CREATE TABLE native_jobs (
            id bigserial PRIMARY KEY,
            batch_id text NOT NULL,
            upstream text NOT NULL,
            provider_batch_id text NOT NULL,
            status integer NOT NULL DEFAULT 0,
            cancel_requested integer NOT NULL DEFAULT 0,
            created_at bigint NOT NULL
        );
        CREATE INDEX ix_native_jobs_batch ON native_jobs (batch_id);
        CREATE INDEX ix_native_jobs_open ON native_jobs (status);
        CREATE TABLE native_job_items (
            job_id bigint NOT NULL,
            item_id bigint NOT NULL,
            PRIMARY KEY (job_id, item_id)
        );
        CREATE INDEX ix_native_job_items_item ON native_job_items (item_id);
        CREATE TABLE nodes (
            name text PRIMARY KEY,
            started_at bigint NOT NULL,
            heartbeat_at bigint NOT NULL,
            lanes text[] NOT NULL DEFAULT '{}'
        );
        CREATE TABLE roles (
            role text PRIMARY KEY,
            holder text NOT NULL,
            until_at bigint NOT NULL
        );
        """;
}
