using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

public sealed partial class SqliteBatchStore
{
    /// <summary>The schema version this code writes; a newer file is refused.</summary>
    public const int SchemaVersion = 12;

    /// <summary>
    /// The schema, one step per version: a file at version n runs the steps after n, in one
    /// transaction. (A property: as a field it would be set before the steps below it that are
    /// not constants.)
    /// </summary>
    private static string[] Migrations => [SchemaVersion1, SchemaVersion2, SchemaVersion3, SchemaVersion4, SchemaVersion5, SchemaVersion6, SchemaVersion7, SchemaVersion8, SchemaVersion9, SchemaVersion10, SchemaVersion11, SchemaVersion12];

    /// <summary>Version 12: answers checked against what their requests asked for, asked again when they do not fit, and counted.</summary>
    private const string SchemaVersion12 = StoreSql.OutputSchema;

    /// <summary>Version 11: each tenant's ledger of realtime calls, by day.</summary>
    private const string SchemaVersion11 = StoreSql.SpendSchema;

    /// <summary>Version 10: how each batch uses the answer cache.</summary>
    private const string SchemaVersion10 = StoreSql.CacheUseSchema;

    /// <summary>Version 9: answers kept from an earlier run of an edited input, marked as such, and what they saved.</summary>
    private const string SchemaVersion9 = StoreSql.ReusedSchema;

    /// <summary>Version 8: the tier each item goes by, when a planned batch cut over to realtime, and what each tier answered.</summary>
    private const string SchemaVersion8 = StoreSql.TiersSchema;

    /// <summary>Version 7: the hash of the body an idempotency key was first used with.</summary>
    private const string SchemaVersion7 = """
        ALTER TABLE batches ADD COLUMN idempotency_sha256 TEXT;
        """;

    /// <summary>Version 6: each lease's own number, so an outcome of an earlier lease never passes for the holder's.</summary>
    private const string SchemaVersion6 = """
        ALTER TABLE items ADD COLUMN lease INTEGER NOT NULL DEFAULT 0;
        """;

    /// <summary>Version 5: each answer's latency, for the dashboard's percentiles.</summary>
    private const string SchemaVersion5 = """
        ALTER TABLE results ADD COLUMN latency_ms INTEGER NOT NULL DEFAULT 0;
        """;

    /// <summary>Version 4: native batch mode: a batch's mode, and the jobs handed to providers' batch APIs with their items.</summary>
    private const string SchemaVersion4 = """
        ALTER TABLE batches ADD COLUMN mode INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE native_jobs (
            id INTEGER PRIMARY KEY,
            batch_id TEXT NOT NULL,
            upstream TEXT NOT NULL,
            provider_batch_id TEXT NOT NULL,
            status INTEGER NOT NULL DEFAULT 0,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL
        );
        CREATE INDEX ix_native_jobs_batch ON native_jobs (batch_id);
        CREATE INDEX ix_native_jobs_open ON native_jobs (status);
        CREATE TABLE native_job_items (
            job_id INTEGER NOT NULL,
            item_id INTEGER NOT NULL,
            PRIMARY KEY (job_id, item_id)
        );
        """;

    /// <summary>Version 3: what each answer cost, and each batch's total, in billionths of a dollar; answers of unpriced models counted; budgets.</summary>
    private const string SchemaVersion3 = """
        ALTER TABLE results ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE results ADD COLUMN cost_nanos INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN cost_nanos INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN unpriced INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN budget_nanos INTEGER;
        ALTER TABLE batches ADD COLUMN budget_exceeded INTEGER NOT NULL DEFAULT 0;
        """;

    private const string SchemaVersion2 = """
        ALTER TABLE batches ADD COLUMN owner TEXT;
        ALTER TABLE batches ADD COLUMN door INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN needs_files INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN ending TEXT;
        ALTER TABLE batches ADD COLUMN finalizing_at INTEGER;
        ALTER TABLE batches ADD COLUMN input_file_id TEXT;
        ALTER TABLE batches ADD COLUMN completion_window TEXT;
        ALTER TABLE batches ADD COLUMN metadata TEXT;
        ALTER TABLE batches ADD COLUMN model TEXT;
        ALTER TABLE batches ADD COLUMN output_file_id TEXT;
        ALTER TABLE batches ADD COLUMN error_file_id TEXT;
        ALTER TABLE batches ADD COLUMN idempotency_key TEXT;
        CREATE UNIQUE INDEX ux_batches_idempotency ON batches (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
        CREATE INDEX ix_batches_owner ON batches (owner, door);
        CREATE INDEX ix_batches_status ON batches (status);
        CREATE TABLE files (
            id TEXT PRIMARY KEY,
            owner TEXT,
            filename TEXT NOT NULL,
            purpose TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            batch_id TEXT
        );
        CREATE INDEX ix_files_owner ON files (owner, purpose);
        """;

    /// <summary>
    /// Version 1. The claim index's predicate is the queued state, written in as the claims write
    /// it: SQLite uses a partial index only for a query that names the same value.
    /// </summary>
    private static readonly string SchemaVersion1 = $"""
        CREATE TABLE batches (
            id TEXT PRIMARY KEY,
            format INTEGER NOT NULL,
            endpoint TEXT,
            status TEXT NOT NULL,
            source TEXT,
            source_sha256 TEXT,
            source_bytes INTEGER,
            created_at INTEGER NOT NULL,
            in_progress_at INTEGER,
            completed_at INTEGER,
            failed_at INTEGER,
            total INTEGER NOT NULL DEFAULT 0,
            succeeded INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            errors TEXT,
            priority INTEGER NOT NULL DEFAULT 1,
            expires_at INTEGER,
            cancelling_at INTEGER,
            cancelled_at INTEGER,
            expired_at INTEGER,
            cancelled INTEGER NOT NULL DEFAULT 0,
            expired INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE batch_models (
            batch_id TEXT NOT NULL,
            model TEXT NOT NULL,
            PRIMARY KEY (batch_id, model)
        );
        CREATE INDEX ix_batches_source ON batches (source, created_at);
        CREATE TABLE items (
            id INTEGER PRIMARY KEY,
            batch_id TEXT NOT NULL,
            line INTEGER NOT NULL,
            custom_id TEXT NOT NULL,
            model TEXT NOT NULL,
            state INTEGER NOT NULL DEFAULT 0,
            priority INTEGER NOT NULL DEFAULT 1,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at INTEGER NOT NULL DEFAULT 0,
            lease_until INTEGER,
            last_error TEXT
        );
        CREATE UNIQUE INDEX ux_items_custom_id ON items (batch_id, custom_id);
        CREATE UNIQUE INDEX ux_items_line ON items (batch_id, line);
        CREATE INDEX ix_items_queued ON items (model, priority DESC, next_attempt_at) WHERE state = {(int)ItemState.Queued};
        CREATE TABLE item_bodies (
            item_id INTEGER PRIMARY KEY,
            body BLOB NOT NULL
        );
        CREATE TABLE results (
            item_id INTEGER PRIMARY KEY,
            status_code INTEGER,
            request_id TEXT,
            body BLOB,
            error_code TEXT,
            error_message TEXT,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            finished_at INTEGER NOT NULL
        );
        """;
}
