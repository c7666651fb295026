using System.Data.Common;
using Npgsql;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

/// <summary>
/// The shared store: one PostgreSQL database behind any number of nodes. Items are claimed in
/// chunks with <c>FOR UPDATE SKIP LOCKED</c>, so no item is leased by two nodes at once; every
/// lease names its node, and a node that stops beating loses its leases to the others. Commits
/// are set-based (one statement per kind of outcome), files live in the database in chunks, and
/// nodes wake each other with <c>NOTIFY</c> when batches change.
/// </summary>
public sealed partial class PostgresBatchStore : IBatchStore, IClusterStore
{
    /// <summary>The schema version this code writes; a newer database is refused.</summary>
    public const int SchemaVersion = 2;

    private const string Channel = "shepherd_batches";
    private const int FileChunkBytes = 1 << 20;

    /// <summary>Taken while migrating, so nodes starting together migrate once.</summary>
    private const long MigrationLock = 0x5368657068657264;

    private readonly PostgresStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly NpgsqlDataSource _data;
    private readonly string _where;
    private readonly CancellationTokenSource _stopping = new();
    private Task? _listening;
    private bool _disposed;

    /// <summary>Creates a store over the database the options name; call <see cref="InitializeAsync"/> before use.</summary>
    public PostgresBatchStore(PostgresStoreOptions options, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        _options = options.Validated();
        _time = timeProvider;
        var builder = new NpgsqlConnectionStringBuilder(_options.NpgsqlConnectionString());
        builder.ApplicationName ??= "shepherd " + _options.NodeName;
        _where = $"PostgreSQL at {builder.Host}:{builder.Port}/{builder.Database}";
        _data = NpgsqlDataSource.Create(builder.ConnectionString);
    }

    /// <inheritdoc />
    public string NodeName => _options.NodeName;

    /// <inheritdoc />
    public TimeSpan NodeTimeout => _options.NodeTimeout;

    /// <inheritdoc />
    public event Action? Changed;

    /// <inheritdoc />
    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        await InTransactionAsync(async (connection, tx) =>
        {
            await ExecuteAsync(connection, tx, "SELECT pg_advisory_xact_lock(@lock)", cancellationToken, ("lock", MigrationLock));
            await ExecuteAsync(connection, tx, "CREATE TABLE IF NOT EXISTS shepherd_schema (version integer NOT NULL)", cancellationToken);
            var version = Convert.ToInt32(await ScalarAsync(connection, tx, "SELECT COALESCE(MAX(version), 0) FROM shepherd_schema", cancellationToken), System.Globalization.CultureInfo.InvariantCulture);
            if (version > SchemaVersion)
            {
                throw new StoreException(
                    $"The database {_where} was written by a newer Shepherd (schema {version}; this version knows {SchemaVersion}). Use that version, or another database.");
            }

            foreach (var migration in Migrations.Skip(version))
            {
                await ExecuteAsync(connection, tx, migration, cancellationToken);
            }

            if (version < SchemaVersion)
            {
                await ExecuteAsync(connection, tx, "DELETE FROM shepherd_schema; INSERT INTO shepherd_schema (version) VALUES (@version)", cancellationToken, ("version", SchemaVersion));
            }

            return 0;
        }, cancellationToken);

        _listening ??= ListenAsync(_stopping.Token);
    }

    /// <inheritdoc />
    public Task<BatchRecord?> GetBatchAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return FirstBatchAsync($"SELECT {StoreRows.BatchColumns} FROM batches WHERE id = @id", cancellationToken, ("id", batchId));
    }

    /// <inheritdoc />
    public Task<BatchRecord?> FindBatchBySourceAsync(string source, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(source);
        return FirstBatchAsync($"SELECT {StoreRows.BatchColumns} FROM batches WHERE source = @source ORDER BY created_at DESC, seq DESC LIMIT 1", cancellationToken, ("source", source));
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<BatchRecord>> ListActiveBatchesAsync(CancellationToken cancellationToken) =>
        await QueryAsync($"SELECT {StoreRows.BatchColumns} FROM batches WHERE status = 'in_progress' ORDER BY created_at, seq", StoreRows.ReadBatch, cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> ListActiveModelsAsync(string? batchId, CancellationToken cancellationToken) =>
        await QueryAsync("""
            SELECT DISTINCT m.model FROM batch_models m JOIN batches b ON b.id = m.batch_id
            WHERE b.status = 'in_progress' AND (@batch::text IS NULL OR b.id = @batch) AND (@batch::text IS NOT NULL OR b.mode = 0)
            ORDER BY m.model
            """, r => r.GetString(0), cancellationToken, ("batch", batchId));

    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> ListModelsAsync(string batchId, CancellationToken cancellationToken) =>
        await QueryAsync("SELECT model FROM batch_models WHERE batch_id = @batch ORDER BY model", r => r.GetString(0), cancellationToken, ("batch", batchId));

    /// <inheritdoc />
    public Task<string> CreateBatchAsync(NewBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var now = _time.GetUtcNow();
        return InTransactionAsync(async (connection, tx) =>
        {
            var created = await ExecuteAsync(connection, tx, """
                INSERT INTO batches (id, format, endpoint, status, source, created_at, priority, expires_at, owner, door, needs_files,
                    input_file_id, completion_window, metadata, model, idempotency_key, idempotency_sha256, budget_nanos, mode, importer)
                VALUES (@id, 0, @endpoint, 'validating', @source, @now, @priority, @expires, @owner, @door, @needs_files,
                    @input_file_id, @completion_window, @metadata, @model, @idempotency_key, @idempotency_sha256, @budget, @mode, @node)
                ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                """, cancellationToken,
                ("id", batch.Id), ("endpoint", batch.Endpoint), ("source", batch.Source), ("now", now.ToUnixTimeMilliseconds()),
                ("priority", (int)batch.Priority), ("expires", batch.CompletionWindow is { } window ? (now + window).ToUnixTimeMilliseconds() : null),
                ("owner", batch.Owner), ("door", (int)batch.Door), ("needs_files", batch.Door is BatchDoor.OpenAI or BatchDoor.Inline),
                ("input_file_id", batch.InputFileId), ("completion_window", batch.CompletionWindowText), ("budget", batch.BudgetNanos),
                ("metadata", batch.Metadata is { Count: > 0 } metadata ? StoreRows.SerializeMetadata(metadata) : null),
                ("model", batch.Model), ("idempotency_key", batch.IdempotencyKey), ("idempotency_sha256", batch.BodySha256), ("mode", (int)batch.Mode), ("node", NodeName));
            if (created == 1)
            {
                return batch.Id;
            }

            (string, object?)[] key = [("owner", batch.Owner), ("key", batch.IdempotencyKey)];
            return StoreRows.FirstOfKey(
                batch,
                (string)(await ScalarAsync(connection, tx, "SELECT id FROM batches WHERE owner IS NOT DISTINCT FROM @owner AND idempotency_key = @key", cancellationToken, key))!,
                await ScalarAsync(connection, tx, "SELECT idempotency_sha256 FROM batches WHERE owner IS NOT DISTINCT FROM @owner AND idempotency_key = @key", cancellationToken, key) as string);
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<Page<BatchRecord>> ListBatchesAsync(OwnerScope owner, IReadOnlyCollection<BatchDoor> doors, PageRequest page, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(doors);
        ArgumentNullException.ThrowIfNull(page);
        var rows = await QueryAsync(PageQuery(StoreRows.BatchColumns, "batches", "(@everyone OR owner IS NOT DISTINCT FROM @owner) AND door = ANY(@doors)", page), StoreRows.ReadBatch, cancellationToken,
            ("owner", owner.Owner), ("everyone", owner.Everyone), ("doors", doors.Select(d => (int)d).ToArray()), ("after", page.After), ("before", page.Before), ("limit", page.Limit + 1));
        return StoreRows.ToPage(rows, page);
    }

    /// <inheritdoc />
    public async Task<TenantUsage> GetUsageAsync(string? owner, CancellationToken cancellationToken) =>
        (await QueryAsync(StoreRows.UsageQuery, StoreRows.ReadUsage, cancellationToken, ("owner", owner))).Single();

    /// <inheritdoc />
    public async Task<IReadOnlyList<BatchRecord>> ListFinalizingBatchesAsync(CancellationToken cancellationToken) =>
        await QueryAsync($"SELECT {StoreRows.BatchColumns} FROM batches WHERE status = 'finalizing' ORDER BY seq", StoreRows.ReadBatch, cancellationToken);

    /// <summary>
    /// Batches whose input was being read by this node in an earlier life, or by a node that has
    /// died: each is taken over by this node as it is listed, so only one node reads it again.
    /// </summary>
    public async Task<IReadOnlyList<BatchRecord>> ListValidatingBatchesAsync(CancellationToken cancellationToken) =>
        await QueryAsync($"""
            UPDATE batches SET importer = @node
            WHERE status = 'validating' AND (importer IS NULL OR importer = @node
                OR importer NOT IN (SELECT name FROM nodes WHERE heartbeat_at >= @alive))
            RETURNING {StoreRows.BatchColumns}
            """, StoreRows.ReadBatch, cancellationToken, ("node", NodeName), ("alive", Alive()));

    /// <inheritdoc />
    public Task ClearItemsAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return DeleteItemsAsync(batchId, "DELETE FROM batch_models WHERE batch_id = @batch", cancellationToken);
    }

    /// <inheritdoc />
    public Task FinishFinalizingAsync(string batchId, string? outputFileId, string? errorFileId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return WithConnectionAsync(connection => ExecuteAsync(connection, null, """
            UPDATE batches SET status = ending, output_file_id = @output, error_file_id = @errors,
                completed_at = CASE WHEN ending = 'completed' THEN @now ELSE completed_at END,
                cancelled_at = CASE WHEN ending = 'cancelled' THEN @now ELSE cancelled_at END
            WHERE id = @id AND status = 'finalizing'
            """, cancellationToken, ("id", batchId), ("output", outputFileId), ("errors", errorFileId), ("now", now.ToUnixTimeMilliseconds())), cancellationToken);
    }

    /// <inheritdoc />
    public Task<FileRecord> AddFileAsync(NewFile file, Stream content, long maxBytes, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(content);
        var createdAt = _time.GetUtcNow();

        // One transaction: a file too large, or cut off, leaves no chunk behind.
        return InTransactionAsync(async (connection, tx) =>
        {
            var buffer = new byte[FileChunkBytes];
            await using var insert = Command(connection, tx, "INSERT INTO file_chunks (file_id, n, data) VALUES (@id, @n, @data)", ("id", file.Id), ("n", 0), ("data", Array.Empty<byte>()));
            long bytes = 0;
            var n = 0;
            while (true)
            {
                var filled = await content.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, cancellationToken);
                bytes += filled;
                if (bytes > maxBytes)
                {
                    throw new FileTooLargeException($"The file is larger than {maxBytes} bytes.");
                }

                if (filled > 0)
                {
                    insert.Parameters["n"].Value = n++;
                    insert.Parameters["data"].Value = filled == buffer.Length ? buffer : buffer[..filled];
                    await insert.ExecuteNonQueryAsync(cancellationToken);
                }

                if (filled < buffer.Length)
                {
                    break;
                }
            }

            var stored = StoreRows.NewFileRecord(file, bytes, createdAt);
            await ExecuteAsync(connection, tx, $"INSERT INTO files ({StoreRows.FileColumns}) VALUES (@id, @owner, @filename, @purpose, @bytes, @created, @batch)", cancellationToken,
                ("id", stored.Id), ("owner", stored.Owner), ("filename", stored.Filename), ("purpose", stored.Purpose), ("bytes", stored.Bytes),
                ("created", stored.CreatedAt.ToUnixTimeMilliseconds()), ("batch", stored.BatchId));
            return stored;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<FileRecord?> GetFileAsync(string fileId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fileId);
        return (await QueryAsync($"SELECT {StoreRows.FileColumns} FROM files WHERE id = @id", StoreRows.ReadFile, cancellationToken, ("id", fileId))).SingleOrDefault();
    }

    /// <inheritdoc />
    public async Task<Page<FileRecord>> ListFilesAsync(OwnerScope owner, string? purpose, PageRequest page, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(page);
        var rows = await QueryAsync(PageQuery(StoreRows.FileColumns, "files", "(@everyone OR owner IS NOT DISTINCT FROM @owner) AND (@purpose::text IS NULL OR purpose = @purpose)", page), StoreRows.ReadFile, cancellationToken,
            ("owner", owner.Owner), ("everyone", owner.Everyone), ("purpose", purpose), ("after", page.After), ("before", page.Before), ("limit", page.Limit + 1));
        return StoreRows.ToPage(rows, page);
    }

    /// <inheritdoc />
    public async Task<Stream> OpenFileAsync(string fileId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fileId);
        var chunks = await ScalarAsync("SELECT (SELECT COUNT(*) FROM file_chunks WHERE file_id = @id) FROM files WHERE id = @id", cancellationToken, ("id", fileId));
        return chunks is long count
            ? new ChunkedFileStream(this, fileId, count)
            : throw new FileNotFoundException($"The file {fileId} is not in the store.", fileId);
    }

    /// <inheritdoc />
    public async Task<bool> DeleteFileAsync(string fileId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fileId);
        return await InTransactionAsync(async (connection, tx) =>
        {
            await ExecuteAsync(connection, tx, "DELETE FROM file_chunks WHERE file_id = @id", cancellationToken, ("id", fileId));
            return await ExecuteAsync(connection, tx, "DELETE FROM files WHERE id = @id", cancellationToken, ("id", fileId)) == 1;
        }, cancellationToken);
    }

    /// <summary>
    /// A page by insertion order, newest first unless asked oldest first: <c>after</c> continues in
    /// the listing's order, <c>before</c> goes back to newer ones (read oldest first, then turned around by <see cref="StoreRows.ToPage{T}"/>).
    /// </summary>
    private static string PageQuery(string columns, string table, string filter, PageRequest page) =>
        page.Before is not null
            ? $"SELECT {columns} FROM {table} WHERE {filter} AND seq > (SELECT seq FROM {table} WHERE id = @before) ORDER BY seq LIMIT @limit"
            : page.OldestFirst
                ? $"SELECT {columns} FROM {table} WHERE {filter} AND (@after::text IS NULL OR seq > (SELECT seq FROM {table} WHERE id = @after)) ORDER BY seq LIMIT @limit"
                : $"SELECT {columns} FROM {table} WHERE {filter} AND (@after::text IS NULL OR seq < (SELECT seq FROM {table} WHERE id = @after)) ORDER BY seq DESC LIMIT @limit";

    /// <inheritdoc />
    public Task<IReadOnlyList<DuplicateCustomId>> AddItemsAsync(string batchId, IReadOnlyList<ImportItem> items, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(items);
        return InTransactionAsync<IReadOnlyList<DuplicateCustomId>>(async (connection, tx) =>
        {
            var priority = await ScalarAsync(connection, tx, "SELECT priority FROM batches WHERE id = @batch AND status = 'validating' FOR SHARE", cancellationToken, ("batch", batchId))
                ?? throw new StoreException($"Batch {batchId} is not being validated.");
            await ExecuteAsync(connection, tx, "INSERT INTO batch_models (batch_id, model) SELECT @batch, unnest(@models) ON CONFLICT DO NOTHING", cancellationToken,
                ("batch", batchId), ("models", items.Select(i => i.Model).Distinct(StringComparer.Ordinal).ToArray()));

            // One statement for the chunk: rows whose custom id the batch holds already are left out,
            // and the lines that went in come back.
            var added = await QueryAsync(connection, tx, """
                WITH input AS (
                    SELECT * FROM unnest(@lines::bigint[], @custom_ids::text[], @models::text[], @bodies::bytea[]) AS t(line, custom_id, model, body)),
                inserted AS (
                    INSERT INTO items (batch_id, line, custom_id, model, state, priority)
                    SELECT @batch, line, custom_id, model, 6, @priority FROM input ORDER BY line
                    ON CONFLICT (batch_id, custom_id) DO NOTHING
                    RETURNING id, line),
                bodies AS (
                    INSERT INTO item_bodies (item_id, body) SELECT inserted.id, input.body FROM inserted JOIN input ON input.line = inserted.line)
                SELECT line FROM inserted
                """, r => r.GetInt64(0), cancellationToken,
                ("batch", batchId), ("priority", priority), ("lines", items.Select(i => i.Line).ToArray()), ("custom_ids", items.Select(i => i.CustomId).ToArray()),
                ("models", items.Select(i => i.Model).ToArray()), ("bodies", items.Select(i => i.Body).ToArray()));
            if (added.Count == items.Count)
            {
                return [];
            }

            var inserted = added.ToHashSet();
            var left = items.Where(i => !inserted.Contains(i.Line)).ToList();
            var first = (await QueryAsync(connection, tx, "SELECT custom_id, line FROM items WHERE batch_id = @batch AND custom_id = ANY(@ids)",
                r => (Id: r.GetString(0), Line: r.GetInt64(1)), cancellationToken, ("batch", batchId), ("ids", left.Select(i => i.CustomId).Distinct(StringComparer.Ordinal).ToArray())))
                .ToDictionary(x => x.Id, x => x.Line, StringComparer.Ordinal);
            return [.. left.Select(i => new DuplicateCustomId(i.Line, i.CustomId, first[i.CustomId]))];
        }, cancellationToken);
    }

    /// <inheritdoc />
    public Task AcceptBatchAsync(string batchId, AcceptedInput input, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(input);
        var now = Now();
        return InTransactionAsync(async (connection, tx) =>
        {
            var changed = await ExecuteAsync(connection, tx, """
                UPDATE batches SET status = 'in_progress', format = @format, endpoint = @endpoint, total = @total,
                    source_sha256 = @sha, source_bytes = @bytes, in_progress_at = @now
                WHERE id = @id AND status = 'validating'
                """, cancellationToken,
                ("id", batchId), ("format", (int)input.Format), ("endpoint", input.Endpoint), ("total", input.Total),
                ("sha", input.Sha256), ("bytes", input.Bytes), ("now", now));
            if (changed != 1)
            {
                throw new StoreException($"Batch {batchId} is not being validated.");
            }

            // Due from now: items of earlier batches stay ahead within a priority, in the claim index's own order.
            await ExecuteAsync(connection, tx, "UPDATE items SET state = 0, next_attempt_at = @now WHERE batch_id = @id AND state = 6", cancellationToken, ("id", batchId), ("now", now));
            await NotifyAsync(connection, tx, cancellationToken);
            return 0;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task RejectBatchAsync(string batchId, IReadOnlyList<InputError> errors, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(errors);
        await DeleteItemsAsync(batchId, null, cancellationToken);
        await WithConnectionAsync(connection => ExecuteAsync(connection, null, "UPDATE batches SET status = 'failed', failed_at = @now, errors = @errors WHERE id = @id", cancellationToken,
            ("id", batchId), ("now", Now()), ("errors", StoreRows.SerializeErrors(errors))), cancellationToken);
    }

    /// <inheritdoc />
    public async Task DeleteBatchAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        await DeleteItemsAsync(batchId, null, cancellationToken);
        await WithConnectionAsync(connection => ExecuteAsync(connection, null, """
            DELETE FROM native_job_items WHERE job_id IN (SELECT id FROM native_jobs WHERE batch_id = @batch);
            DELETE FROM native_jobs WHERE batch_id = @batch;
            DELETE FROM batch_models WHERE batch_id = @batch;
            DELETE FROM batches WHERE id = @batch
            """, cancellationToken, ("batch", batchId)), cancellationToken);
    }

    /// <summary>Queues again every item this node leased in an earlier life: the leases of a process that died are worthless. Returns how many were released.</summary>
    public Task<int> ReleaseLeasesAsync(CancellationToken cancellationToken) =>
        InTransactionAsync((connection, tx) => ReleaseAsync(connection, tx, "leased_by = @node", cancellationToken, ("node", NodeName)), cancellationToken);

    /// <summary>
    /// Queues again the leased items that <paramref name="whose"/> picks, and ends what a realtime
    /// batch that is cancelling or past its window had in flight, as the rest of it ended.
    /// </summary>
    private async Task<int> ReleaseAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string whose, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        // An item of a job still open at its provider was not sent again by the stop: the runner
        // leases it back to that job, and that lease must not count as another attempt.
        var released = await ExecuteAsync(connection, tx, $"""
            UPDATE items SET state = 0, lease_until = NULL, leased_by = NULL,
                attempts = attempts - CASE WHEN EXISTS (SELECT 1 FROM native_job_items t JOIN native_jobs j ON j.id = t.job_id WHERE t.item_id = items.id AND j.status = 0) THEN 1 ELSE 0 END
            WHERE state = 1 AND ({whose})
            """, cancellationToken, parameters);
        if (released == 0)
        {
            return 0;
        }

        var stopped = await QueryAsync(connection, tx, """
            UPDATE items i SET state = CASE WHEN b.status = 'cancelling' THEN 4 ELSE 5 END
            FROM batches b
            WHERE i.batch_id = b.id AND i.state IN (0, 6) AND b.mode = 0 AND (b.status = 'cancelling' OR (b.status = 'in_progress' AND b.expired_at IS NOT NULL))
            RETURNING i.batch_id, i.state
            """, r => (Batch: r.GetString(0), State: (ItemState)r.GetInt32(1)), cancellationToken);
        var deltas = new SortedDictionary<string, StoreRows.BatchDelta>(StringComparer.Ordinal);
        foreach (var (batch, state) in stopped)
        {
            deltas.TryGetValue(batch, out var delta);
            delta.AddUnsent(state == ItemState.Cancelled ? OutcomeKind.Cancelled : OutcomeKind.Expired);
            deltas[batch] = delta;
        }

        await ApplyDeltasAsync(connection, tx, deltas, Now(), cancellationToken);
        await NotifyAsync(connection, tx, cancellationToken);
        return released;
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<ClaimedItem>> ClaimAsync(string model, string? batchId, int max, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        return WithConnectionAsync<IReadOnlyList<ClaimedItem>>(async connection =>
        {
            // Rows another node is claiming are skipped, not waited for; a row that another claim
            // took meanwhile no longer matches state = 0 when its lock is won, so none is leased twice.
            var claimed = await QueryAsync(connection, null, """
                WITH picked AS (
                    SELECT i.id FROM items i JOIN batches t ON t.id = i.batch_id
                    WHERE i.model = @model AND i.state = 0 AND i.next_attempt_at <= @now
                        AND (@batch::text IS NULL OR i.batch_id = @batch) AND (@batch::text IS NOT NULL OR t.mode = 0)
                    ORDER BY i.priority DESC, i.next_attempt_at, i.id
                    LIMIT @max
                    FOR UPDATE OF i SKIP LOCKED)
                UPDATE items i SET state = 1, attempts = i.attempts + 1, lease = i.lease + 1, lease_until = @lease, leased_by = @node
                FROM picked, item_bodies b, batches t
                WHERE i.id = picked.id AND b.item_id = i.id AND t.id = i.batch_id
                RETURNING i.id, i.batch_id, i.line, i.custom_id, i.model, b.body, i.attempts, i.priority, t.endpoint, i.next_attempt_at, i.lease
                """, r => (Item: new ClaimedItem(r.GetInt64(0), r.GetString(1), r.GetInt64(2), r.GetString(3), r.GetString(4), (byte[])r.GetValue(5), r.GetInt32(6), (BatchPriority)r.GetInt32(7), r.GetString(8)) { Lease = r.GetInt64(10) }, Due: r.GetInt64(9)),
                cancellationToken, ("model", model), ("batch", batchId), ("now", now.ToUnixTimeMilliseconds()), ("max", max), ("lease", leaseUntil.ToUnixTimeMilliseconds()), ("node", NodeName));
            return [.. claimed.OrderByDescending(c => c.Item.Priority).ThenBy(c => c.Due).ThenBy(c => c.Item.ItemId).Select(c => c.Item)];
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<DateTimeOffset?> NextDueAsync(string model, string? batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(model);
        var due = await ScalarAsync("""
            SELECT MIN(i.next_attempt_at) FROM items i JOIN batches t ON t.id = i.batch_id
            WHERE i.model = @model AND i.state = 0 AND (@batch::text IS NULL OR i.batch_id = @batch) AND (@batch::text IS NOT NULL OR t.mode = 0)
            """, cancellationToken, ("model", model), ("batch", batchId));
        return due is long ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null;
    }

    /// <inheritdoc />
    public async Task<BatchRecord?> CancelBatchAsync(string batchId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        await EndUnsentAsync(batchId, ItemState.Cancelled, now, cancellationToken);
        return await GetBatchAsync(batchId, cancellationToken);
    }

    /// <inheritdoc />
    public Task ExpireBatchAsync(string batchId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return EndUnsentAsync(batchId, ItemState.Expired, now, cancellationToken);
    }

    /// <summary>Ends every item not yet sent as cancelled or expired, marks the batch, and ends it if nothing is in flight.</summary>
    private Task<int> EndUnsentAsync(string batchId, ItemState state, DateTimeOffset now, CancellationToken cancellationToken) =>
        InTransactionAsync(async (connection, tx) =>
        {
            var cancel = state == ItemState.Cancelled;
            var at = now.ToUnixTimeMilliseconds();
            var marked = await ExecuteAsync(connection, tx, cancel
                    ? "UPDATE batches SET status = 'cancelling', cancelling_at = @now WHERE id = @id AND status IN ('validating', 'in_progress')"
                    : "UPDATE batches SET expired_at = @now WHERE id = @id AND status = 'in_progress' AND expired_at IS NULL",
                cancellationToken, ("id", batchId), ("now", at));
            if (marked == 1)
            {
                var ended = await ExecuteAsync(connection, tx, "UPDATE items SET state = @state, lease_until = NULL, leased_by = NULL WHERE batch_id = @id AND state IN (0, 6)", cancellationToken,
                    ("id", batchId), ("state", (int)state));
                await ExecuteAsync(connection, tx, cancel
                        ? "UPDATE batches SET cancelled = cancelled + @n, total = GREATEST(total, (SELECT COUNT(*) FROM items WHERE batch_id = @id)) WHERE id = @id"
                        : "UPDATE batches SET expired = expired + @n WHERE id = @id",
                    cancellationToken, ("id", batchId), ("n", (long)ended));
                await FinishBatchAsync(connection, tx, batchId, at, cancellationToken);
                await NotifyAsync(connection, tx, cancellationToken);
            }

            return 0;
        }, cancellationToken);

    /// <inheritdoc />
    public Task<long> RequeueFailedAsync(string batchId, DateTimeOffset? expiresAt, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return InTransactionAsync(async (connection, tx) =>
        {
            // The batch first gives back what the results of those items counted, then they lose them.
            if (await ExecuteAsync(connection, tx, StoreRows.RequeueFailedBatchSql, cancellationToken, ("id", batchId), ("expires", expiresAt?.ToUnixTimeMilliseconds())) == 0)
            {
                return 0L;
            }

            await ExecuteAsync(connection, tx, "DELETE FROM results WHERE item_id IN (SELECT id FROM items WHERE batch_id = @id AND state IN (3, 5))", cancellationToken, ("id", batchId));
            var requeued = await ExecuteAsync(connection, tx,
                "UPDATE items SET state = 0, attempts = 0, next_attempt_at = 0, lease_until = NULL, leased_by = NULL, last_error = NULL WHERE batch_id = @id AND state IN (3, 5)",
                cancellationToken, ("id", batchId));
            await NotifyAsync(connection, tx, cancellationToken);
            return (long)requeued;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public Task SetBudgetAsync(string batchId, long? budgetNanos, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return InTransactionAsync((connection, tx) => ExecuteAsync(connection, tx, "UPDATE batches SET budget_nanos = @budget WHERE id = @id", cancellationToken, ("id", batchId), ("budget", budgetNanos)), cancellationToken);
    }

    /// <inheritdoc />
    public Task<CommitSummary> CommitAsync(IReadOnlyList<ItemOutcome> outcomes, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(outcomes);
        if (outcomes.Count == 0)
        {
            return Task.FromResult(CommitSummary.None);
        }

        return InTransactionAsync(async (connection, tx) =>
        {
            // The batches' rows are locked first, in one order: a cancel of one of them waits for
            // this commit, or this commit sees it, and two commits never wait on each other in a ring.
            var batchIds = outcomes.Select(o => o.Item.BatchId).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
            var cancelling = (await QueryAsync(connection, tx, "SELECT id FROM batches WHERE id = ANY(@ids) AND status = 'cancelling' ORDER BY id FOR UPDATE",
                r => r.GetString(0), cancellationToken, ("ids", batchIds))).ToHashSet(StringComparer.Ordinal);
            var plan = CommitPlan.Of(outcomes, cancelling);
            var deltas = new SortedDictionary<string, StoreRows.BatchDelta>(StringComparer.Ordinal);

            if (plan.Released.Outcomes.Count > 0)
            {
                await ExecuteAsync(connection, tx, """
                    UPDATE items i SET state = 0, lease_until = NULL, leased_by = NULL, attempts = i.attempts - 1
                    FROM unnest(@ids::bigint[], @leases::bigint[]) AS u(id, lease)
                    WHERE i.id = u.id AND i.state = 1 AND i.lease = u.lease
                    """, cancellationToken, ("ids", plan.Released.Ids()), ("leases", plan.Released.Leases()));
            }

            foreach (var id in await QueryAsync(connection, tx, """
                UPDATE items i SET state = u.state, lease_until = NULL, leased_by = NULL, attempts = i.attempts - 1
                FROM unnest(@ids::bigint[], @leases::bigint[], @states::integer[]) AS u(id, lease, state)
                WHERE i.id = u.id AND i.state = 1 AND i.lease = u.lease
                RETURNING i.id
                """, r => r.GetInt64(0), cancellationToken, ("ids", plan.Unsent.Ids()), ("leases", plan.Unsent.Leases()), ("states", plan.Unsent.States())))
            {
                var outcome = plan.Unsent.ById[id];
                deltas.TryGetValue(outcome.Item.BatchId, out var delta);
                delta.AddUnsent(outcome.Kind);
                deltas[outcome.Item.BatchId] = delta;
            }

            if (plan.Retried.Outcomes.Count > 0)
            {
                await ExecuteAsync(connection, tx, """
                    UPDATE items i SET state = 0, lease_until = NULL, leased_by = NULL, next_attempt_at = u.next, last_error = u.error
                    FROM unnest(@ids::bigint[], @leases::bigint[], @next::bigint[], @errors::text[]) AS u(id, lease, next, error)
                    WHERE i.id = u.id AND i.state = 1 AND i.lease = u.lease
                    """, cancellationToken, ("ids", plan.Retried.Ids()), ("leases", plan.Retried.Leases()),
                    ("next", plan.Retried.Outcomes.Select(o => o.NextAttemptAt.ToUnixTimeMilliseconds()).ToArray()), ("errors", plan.Retried.Errors()));
            }

            // Only answers whose lease is still held are recorded: a lease that was lost (released
            // and claimed again) belongs to the other holder, which records its own answer.
            var held = (await QueryAsync(connection, tx, """
                UPDATE items i SET state = u.state, lease_until = NULL, leased_by = NULL, last_error = u.error
                FROM unnest(@ids::bigint[], @leases::bigint[], @states::integer[], @errors::text[]) AS u(id, lease, state, error)
                WHERE i.id = u.id AND i.state = 1 AND i.lease = u.lease
                RETURNING i.id
                """, r => r.GetInt64(0), cancellationToken, ("ids", plan.Ended.Ids()), ("leases", plan.Ended.Leases()), ("states", plan.Ended.States()), ("errors", plan.Ended.Errors())))
                .Select(id => plan.Ended.ById[id]).ToList();
            if (held.Count > 0)
            {
                var results = held.Select(o => o.Result).ToList();
                await ExecuteAsync(connection, tx, """
                    INSERT INTO results (item_id, status_code, request_id, body, error_code, error_message, input_tokens, output_tokens, cached_tokens, cost_nanos, latency_ms, finished_at)
                    SELECT u.*, @now FROM unnest(@ids::bigint[], @status::integer[], @request_ids::text[], @bodies::bytea[], @codes::text[], @messages::text[],
                        @input::integer[], @output::integer[], @cached::integer[], @cost::bigint[], @latency::integer[]) AS u
                    """, cancellationToken, ("now", now.ToUnixTimeMilliseconds()), ("ids", held.Select(o => o.Item.ItemId).ToArray()),
                    ("status", results.Select(r => r.StatusCode).ToArray()), ("request_ids", results.Select(r => r.RequestId).ToArray()),
                    ("bodies", results.Select(r => r.Body).ToArray()), ("codes", results.Select(r => r.ErrorCode).ToArray()),
                    ("messages", results.Select(r => r.ErrorMessage).ToArray()), ("input", results.Select(r => r.InputTokens).ToArray()),
                    ("output", results.Select(r => r.OutputTokens).ToArray()), ("cached", results.Select(r => r.CachedTokens).ToArray()),
                    ("cost", results.Select(r => r.CostNanos).ToArray()), ("latency", results.Select(r => r.LatencyMs).ToArray()));
                foreach (var outcome in held)
                {
                    deltas.TryGetValue(outcome.Item.BatchId, out var delta);
                    delta.Add(outcome.Kind == OutcomeKind.Succeeded, outcome.Result);
                    deltas[outcome.Item.BatchId] = delta;
                }
            }

            var completed = await ApplyDeltasAsync(connection, tx, deltas, now.ToUnixTimeMilliseconds(), cancellationToken);
            if (completed.Count > 0)
            {
                await NotifyAsync(connection, tx, cancellationToken);
            }

            return completed.Count == 0 ? CommitSummary.None : new CommitSummary(completed);
        }, cancellationToken);
    }

    /// <summary>Adds what ended to each batch's counts and ends the batches whose last item ended; returns those.</summary>
    private static async Task<List<string>> ApplyDeltasAsync(NpgsqlConnection connection, NpgsqlTransaction tx, SortedDictionary<string, StoreRows.BatchDelta> deltas, long now, CancellationToken cancellationToken)
    {
        var completed = new List<string>();
        foreach (var (batchId, delta) in deltas)
        {
            await ExecuteAsync(connection, tx, """
                UPDATE batches SET succeeded = succeeded + @s, failed = failed + @f, cancelled = cancelled + @c, expired = expired + @e,
                    input_tokens = input_tokens + @in, output_tokens = output_tokens + @out, cost_nanos = cost_nanos + @cost, unpriced = unpriced + @unpriced,
                    budget_exceeded = budget_exceeded + @over
                WHERE id = @id
                """, cancellationToken, ("id", batchId), ("s", delta.Succeeded), ("f", delta.Failed), ("c", delta.Cancelled), ("e", delta.Expired),
                ("in", delta.InputTokens), ("out", delta.OutputTokens), ("cost", delta.CostNanos), ("unpriced", delta.Unpriced), ("over", delta.BudgetExceeded));
            if (await FinishBatchAsync(connection, tx, batchId, now, cancellationToken))
            {
                completed.Add(batchId);
            }
        }

        return completed;
    }

    /// <summary>
    /// Ends a batch once every item has ended: it will end completed, cancelled or expired.
    /// Batches of the API doors first become finalizing (their result files are written); the
    /// others take their end at once. Returns whether the batch ended here.
    /// </summary>
    private static async Task<bool> FinishBatchAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string batchId, long now, CancellationToken cancellationToken) =>
        await ScalarAsync(connection, tx, """
            WITH ending AS (
                SELECT id, CASE WHEN status = 'cancelling' THEN 'cancelled' WHEN expired_at IS NOT NULL THEN 'expired' ELSE 'completed' END AS ending
                FROM batches WHERE id = @id AND status IN ('in_progress', 'cancelling') AND succeeded + failed + cancelled + expired >= total)
            UPDATE batches b SET
                ending = e.ending,
                status = CASE WHEN b.needs_files THEN 'finalizing' ELSE e.ending END,
                finalizing_at = CASE WHEN b.needs_files THEN @now ELSE b.finalizing_at END,
                completed_at = CASE WHEN NOT b.needs_files AND e.ending = 'completed' THEN @now ELSE b.completed_at END,
                cancelled_at = CASE WHEN NOT b.needs_files AND e.ending = 'cancelled' THEN @now ELSE b.cancelled_at END
            FROM ending e WHERE b.id = e.id
            RETURNING b.id
            """, cancellationToken, ("id", batchId), ("now", now)) is not null;

    /// <inheritdoc />
    public IAsyncEnumerable<ItemResult> ReadResultsAsync(string batchId, long skip, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentOutOfRangeException.ThrowIfNegative(skip);
        return StoreRows.PagedAsync((after, offset, ct) => QueryAsync($"""
            {StoreRows.ResultColumns}
            WHERE i.batch_id = @batch AND i.line > @after
            ORDER BY i.line
            LIMIT @limit OFFSET @offset
            """, StoreRows.ReadResult, ct, ("batch", batchId), ("after", after), ("limit", _options.ResultPageSize), ("offset", offset)),
            result => result.Line, _options.ResultPageSize, skip, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<ItemResult?> GetResultAsync(string batchId, string customId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(customId);
        return (await QueryAsync($"{StoreRows.ResultColumns} WHERE i.batch_id = @batch AND i.custom_id = @custom_id", StoreRows.ReadResult, cancellationToken,
            ("batch", batchId), ("custom_id", customId))).SingleOrDefault();
    }

    /// <inheritdoc />
    public async Task<BatchActivity> GetActivityAsync(string batchId, TimeSpan bucket, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        var width = Math.Max(1, (long)bucket.TotalMilliseconds);
        return new BatchActivity(
            await QueryAsync(StoreRows.TimelineQuery, r => StoreRows.ReadBucket(r, width), cancellationToken, ("batch", batchId), ("width", width)),
            await QueryAsync(StoreRows.ErrorsQuery, r => new ErrorCount(r.GetString(0), r.GetInt64(1)), cancellationToken, ("batch", batchId)),
            await QueryAsync(StoreRows.LatencyQuery, r => r.GetInt32(0), cancellationToken, ("batch", batchId)));
    }

    /// <inheritdoc />
    public IAsyncEnumerable<ImportItem> ReadRequestsAsync(string batchId, IReadOnlyCollection<ItemState> states, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(states);
        var wanted = states.Select(state => (int)state).ToArray();
        return StoreRows.PagedAsync((after, _, ct) => QueryAsync("""
            SELECT i.line, i.custom_id, i.model, b.body
            FROM items i JOIN item_bodies b ON b.item_id = i.id
            WHERE i.batch_id = @batch AND i.line > @after AND i.state = ANY(@states)
            ORDER BY i.line
            LIMIT @limit
            """, r => new ImportItem(r.GetInt64(0), r.GetString(1), r.GetString(2), (byte[])r.GetValue(3)), ct,
            ("batch", batchId), ("after", after), ("states", wanted), ("limit", _options.ResultPageSize)),
            request => request.Line, _options.ResultPageSize, 0, cancellationToken);
    }

    /// <inheritdoc />
    public Task<NativeJob> AddNativeJobAsync(string batchId, string upstream, string providerBatchId, IReadOnlyList<long> itemIds, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(upstream);
        ArgumentNullException.ThrowIfNull(providerBatchId);
        ArgumentNullException.ThrowIfNull(itemIds);
        return InTransactionAsync(async (connection, tx) =>
        {
            var id = (long)(await ScalarAsync(connection, tx, """
                INSERT INTO native_jobs (batch_id, upstream, provider_batch_id, status, created_at) VALUES (@batch, @upstream, @provider, 0, @now)
                RETURNING id
                """, cancellationToken, ("batch", batchId), ("upstream", upstream), ("provider", providerBatchId), ("now", now.ToUnixTimeMilliseconds())))!;
            await ExecuteAsync(connection, tx, "INSERT INTO native_job_items (job_id, item_id) SELECT @job, unnest(@items::bigint[])", cancellationToken,
                ("job", id), ("items", itemIds.ToArray()));
            return StoreRows.NewNativeJob(id, batchId, upstream, providerBatchId, now);
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<NativeJob>> ListOpenNativeJobsAsync(CancellationToken cancellationToken) =>
        await QueryAsync($"SELECT {StoreRows.NativeJobColumns} FROM native_jobs WHERE status = 0 ORDER BY id", StoreRows.ReadNativeJob, cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<NativeJob>> ListNativeJobsAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return await QueryAsync($"SELECT {StoreRows.NativeJobColumns} FROM native_jobs WHERE batch_id = @batch ORDER BY id", StoreRows.ReadNativeJob, cancellationToken, ("batch", batchId));
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<long>> ListNativeJobItemsAsync(long jobId, CancellationToken cancellationToken) =>
        await QueryAsync("SELECT item_id FROM native_job_items WHERE job_id = @job ORDER BY item_id", r => r.GetInt64(0), cancellationToken, ("job", jobId));

    /// <inheritdoc />
    public Task UpdateNativeJobAsync(long jobId, NativeJobStatus status, bool cancelRequested, CancellationToken cancellationToken) =>
        WithConnectionAsync(connection => ExecuteAsync(connection, null, "UPDATE native_jobs SET status = @status, cancel_requested = @cancel WHERE id = @id", cancellationToken,
            ("id", jobId), ("status", (int)status), ("cancel", cancelRequested ? 1 : 0)), cancellationToken);

    /// <inheritdoc />
    public Task<ClusterView> HeartbeatAsync(IReadOnlyCollection<string> lanes, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lanes);
        var at = now.ToUnixTimeMilliseconds();
        return InTransactionAsync(async (connection, tx) =>
        {
            // A node that finds no row of its own was taken for dead (or is new): whatever it leased is no longer its.
            var known = await ScalarAsync(connection, tx, "UPDATE nodes SET heartbeat_at = @now, lanes = @lanes WHERE name = @node RETURNING name", cancellationToken,
                ("node", NodeName), ("now", at), ("lanes", lanes.ToArray())) is not null;
            if (!known)
            {
                await ExecuteAsync(connection, tx, "INSERT INTO nodes (name, started_at, heartbeat_at, lanes) VALUES (@node, @now, @now, @lanes) ON CONFLICT (name) DO NOTHING", cancellationToken,
                    ("node", NodeName), ("now", at), ("lanes", lanes.ToArray()));
            }

            // A node silent past the timeout is dead: its leases go back to the queue (and any
            // lease past its own deadline, whoever holds it), its roles are free.
            var dead = await QueryAsync(connection, tx, "DELETE FROM nodes WHERE heartbeat_at < @alive RETURNING name", r => r.GetString(0), cancellationToken, ("alive", Alive(now)));
            await ExecuteAsync(connection, tx, "DELETE FROM roles WHERE holder = ANY(@dead)", cancellationToken, ("dead", dead.ToArray()));
            await ReleaseAsync(connection, tx, "leased_by = ANY(@dead) OR lease_until < @now", cancellationToken, ("dead", dead.ToArray()), ("now", at));
            var nodes = Convert.ToInt32(await ScalarAsync(connection, tx, "SELECT COUNT(*) FROM nodes", cancellationToken), System.Globalization.CultureInfo.InvariantCulture);
            var others = (await QueryAsync(connection, tx, "SELECT lane, COUNT(*)::integer FROM nodes, unnest(lanes) AS lane WHERE name <> @node GROUP BY lane",
                r => (Lane: r.GetString(0), Nodes: r.GetInt32(1)), cancellationToken, ("node", NodeName)))
                .ToDictionary(x => x.Lane, x => x.Nodes, StringComparer.Ordinal);
            return new ClusterView(nodes, others) { Joined = !known };
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<bool> HoldRoleAsync(string role, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(role);
        return await ScalarAsync("""
            INSERT INTO roles (role, holder, until_at) VALUES (@role, @node, @until)
            ON CONFLICT (role) DO UPDATE SET holder = @node, until_at = @until WHERE roles.holder = @node OR roles.until_at < @now
            RETURNING holder
            """, cancellationToken, ("role", role), ("node", NodeName), ("now", now.ToUnixTimeMilliseconds()), ("until", (now + NodeTimeout).ToUnixTimeMilliseconds())) is not null;
    }

    /// <inheritdoc />
    public Task LeaveAsync(CancellationToken cancellationToken) =>
        InTransactionAsync(async (connection, tx) =>
        {
            await ExecuteAsync(connection, tx, "DELETE FROM roles WHERE holder = @node; DELETE FROM nodes WHERE name = @node", cancellationToken, ("node", NodeName));
            return await ReleaseAsync(connection, tx, "leased_by = @node", cancellationToken, ("node", NodeName));
        }, cancellationToken);

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        await _stopping.CancelAsync();
        if (_listening is not null)
        {
            await _listening;
        }

        await _data.DisposeAsync();
        _stopping.Dispose();
    }

    /// <summary>
    /// Listens for other nodes' changes on its own connection, and connects again after a loss
    /// (saying "changed" then, since a notice may have been missed meanwhile).
    /// </summary>
    private async Task ListenAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await using var connection = await _data.OpenConnectionAsync(stoppingToken);
                connection.Notification += (_, notice) =>
                {
                    if (notice.Payload != NodeName)
                    {
                        Changed?.Invoke();
                    }
                };
                await using (var listen = new NpgsqlCommand($"LISTEN {Channel}", connection))
                {
                    await listen.ExecuteNonQueryAsync(stoppingToken);
                }

                Changed?.Invoke();
                while (true)
                {
                    await connection.WaitAsync(stoppingToken);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is NpgsqlException or IOException or TimeoutException)
            {
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), _time, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private Task<int> NotifyAsync(NpgsqlConnection connection, NpgsqlTransaction tx, CancellationToken cancellationToken) =>
        ExecuteAsync(connection, tx, $"SELECT pg_notify('{Channel}', @node)", cancellationToken, ("node", NodeName));

    private async Task DeleteItemsAsync(string batchId, string? alsoSql, CancellationToken cancellationToken)
    {
        // Small transactions, so a large rejected batch never holds its rows for long.
        const string Chunk = "SELECT id FROM items WHERE batch_id = @batch ORDER BY id LIMIT 5000";
        while (await InTransactionAsync(async (connection, tx) =>
        {
            await ExecuteAsync(connection, tx, $"DELETE FROM results WHERE item_id IN ({Chunk}); DELETE FROM item_bodies WHERE item_id IN ({Chunk})", cancellationToken, ("batch", batchId));
            return await ExecuteAsync(connection, tx, $"DELETE FROM items WHERE id IN ({Chunk})", cancellationToken, ("batch", batchId));
        }, cancellationToken) > 0)
        {
        }

        if (alsoSql is not null)
        {
            await WithConnectionAsync(connection => ExecuteAsync(connection, null, alsoSql, cancellationToken, ("batch", batchId)), cancellationToken);
        }
    }

    private long Now() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>The oldest heartbeat of a node still alive at <paramref name="now"/>.</summary>
    private long Alive(DateTimeOffset? now = null) => ((now ?? _time.GetUtcNow()) - NodeTimeout).ToUnixTimeMilliseconds();

    private async Task<BatchRecord?> FirstBatchAsync(string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        (await QueryAsync(sql, StoreRows.ReadBatch, cancellationToken, parameters)).FirstOrDefault();

    private Task<List<T>> QueryAsync<T>(string sql, Func<DbDataReader, T> read, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        WithConnectionAsync(connection => QueryAsync(connection, null, sql, read, cancellationToken, parameters), cancellationToken);

    private Task<object?> ScalarAsync(string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        WithConnectionAsync(connection => ScalarAsync(connection, null, sql, cancellationToken, parameters), cancellationToken);

    private static async Task<List<T>> QueryAsync<T>(NpgsqlConnection connection, NpgsqlTransaction? tx, string sql, Func<DbDataReader, T> read, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = Command(connection, tx, sql, parameters);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var rows = new List<T>();
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(read(reader));
        }

        return rows;
    }

    private static async Task<int> ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = Command(connection, tx, sql, parameters);
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static async Task<object?> ScalarAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = Command(connection, tx, sql, parameters);
        var value = await command.ExecuteScalarAsync(cancellationToken);
        return value is DBNull ? null : value;
    }

    private static NpgsqlCommand Command(NpgsqlConnection connection, NpgsqlTransaction? tx, string sql, params (string Name, object? Value)[] parameters)
    {
        var command = new NpgsqlCommand(sql, connection, tx);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter(name, value ?? DBNull.Value));
        }

        return command;
    }

    private async Task<T> WithConnectionAsync<T>(Func<NpgsqlConnection, Task<T>> work, CancellationToken cancellationToken)
    {
        try
        {
            await using var connection = await _data.OpenConnectionAsync(cancellationToken);
            return await work(connection);
        }
        catch (NpgsqlException ex) when (!cancellationToken.IsCancellationRequested)
        {
            if (ex is not PostgresException { SqlState: var state } || state.StartsWith("08", StringComparison.Ordinal) || state.StartsWith("57P", StringComparison.Ordinal))
            {
                // The connection failed, or the server ended it: pooled ones may be dead too, so
                // the next call opens fresh ones instead of failing on each of them in turn.
                _data.Clear();
            }

            throw Failed(ex);
        }
    }

    private Task<T> InTransactionAsync<T>(Func<NpgsqlConnection, NpgsqlTransaction, Task<T>> work, CancellationToken cancellationToken) =>
        WithConnectionAsync(async connection =>
        {
            await using var tx = await connection.BeginTransactionAsync(cancellationToken);
            var result = await work(connection, tx);
            await tx.CommitAsync(cancellationToken);
            return result;
        }, cancellationToken);

    private StoreException Failed(NpgsqlException ex) =>
        new($"The database {_where} could not be used: {ex.Message}", ex);

    /// <summary>A stored file read back chunk by chunk, one query per chunk, so any size streams in constant memory.</summary>
    private sealed class ChunkedFileStream(PostgresBatchStore store, string fileId, long chunks) : Stream
    {
        private byte[] _chunk = [];
        private int _offset;
        private long _next;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            while (_offset == _chunk.Length)
            {
                if (_next == chunks)
                {
                    return 0;
                }

                _chunk = (byte[]?)await store.ScalarAsync("SELECT data FROM file_chunks WHERE file_id = @id AND n = @n", cancellationToken, ("id", fileId), ("n", (int)_next++))
                    ?? throw new IOException($"The file {fileId} was deleted while it was read.");
                _offset = 0;
            }

            var count = Math.Min(buffer.Length, _chunk.Length - _offset);
            _chunk.AsMemory(_offset, count).CopyTo(buffer);
            _offset += count;
            return count;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count).GetAwaiter().GetResult();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
