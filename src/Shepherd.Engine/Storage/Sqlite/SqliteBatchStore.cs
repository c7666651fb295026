using System.Data;
using System.Globalization;
using Microsoft.Data.Sqlite;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

/// <summary>
/// The embedded store: one SQLite file in WAL mode. One connection writes (claims, commits,
/// imports), serialised by a lock; reads use pooled connections and never wait for writes.
/// </summary>
public sealed class SqliteBatchStore : IBatchStore
{
    /// <summary>The schema version this code writes; a newer file is refused.</summary>
    public const int SchemaVersion = 7;

    /// <summary>
    /// Ends a batch once every item has ended: it will end completed, cancelled or expired.
    /// Batches of the API doors first become finalizing (their result files are written);
    /// the others take their end at once.
    /// </summary>
    private const string FinishBatch = """
        UPDATE batches SET ending = CASE WHEN status = 'cancelling' THEN 'cancelled' WHEN expired_at IS NOT NULL THEN 'expired' ELSE 'completed' END
        WHERE id = $id AND status IN ('in_progress', 'cancelling') AND succeeded + failed + cancelled + expired >= total;
        UPDATE batches SET
            status = CASE WHEN needs_files = 1 THEN 'finalizing' ELSE ending END,
            finalizing_at = CASE WHEN needs_files = 1 THEN $now ELSE finalizing_at END,
            completed_at = CASE WHEN needs_files = 0 AND ending = 'completed' THEN $now ELSE completed_at END,
            cancelled_at = CASE WHEN needs_files = 0 AND ending = 'cancelled' THEN $now ELSE cancelled_at END
        WHERE id = $id AND status IN ('in_progress', 'cancelling') AND ending IS NOT NULL
        """;

    private readonly SqliteStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly string _connectionString;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private SqliteConnection? _writer;

    /// <summary>The write connection's statements prepared once, by their SQL; touched under the write lock only.</summary>
    private readonly Dictionary<string, SqliteStatement> _prepared = new(StringComparer.Ordinal);
    private bool _disposed;

    /// <summary>Creates a store over the file the options name; call <see cref="InitializeAsync"/> before use.</summary>
    public SqliteBatchStore(SqliteStoreOptions options, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        _options = options.Validated();
        _time = timeProvider;
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = _options.Path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
            DefaultTimeout = (int)Math.Ceiling(_options.BusyTimeout.TotalSeconds),
        }.ToString();
    }

    /// <inheritdoc />
    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (_writer is not null)
            {
                return;
            }

            var writer = Open();
            try
            {
                Execute(writer, "PRAGMA journal_mode = WAL;");

                // All writes go through this connection, so its commits are the ones that checkpoint.
                // Every 10,000 pages (40 MB of log) rather than SQLite's 1,000: a page that many commits
                // change (an index page, a batch row) is copied back to the file once per checkpoint,
                // not ten times (a tenth less CPU for a dispatched request, see docs/benchmarks.md).
                Execute(writer, "PRAGMA wal_autocheckpoint = 10000;");
                var version = Convert.ToInt32(Scalar(writer, "PRAGMA user_version;"));
                if (version > SchemaVersion)
                {
                    throw new StoreException(
                        $"The state file {_options.Path} was written by a newer Shepherd (schema {version}; this version knows {SchemaVersion}). Use that version, or another --state file.");
                }

                if (version < SchemaVersion)
                {
                    using var tx = writer.BeginTransaction();
                    foreach (var migration in Migrations.Skip(version))
                    {
                        Execute(writer, migration, tx);
                    }

                    Execute(writer, $"PRAGMA user_version = {SchemaVersion};", tx);
                    tx.Commit();
                }
            }
            catch
            {
                writer.Dispose();
                throw;
            }

            _writer = writer;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <inheritdoc />
    public async Task<BatchRecord?> GetBatchAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        await using var connection = Open();
        return ReadBatches(connection, $"SELECT {StoreRows.BatchColumns} FROM batches WHERE id = $id", ("$id", batchId)).SingleOrDefault();
    }

    /// <inheritdoc />
    public async Task<BatchRecord?> FindBatchBySourceAsync(string source, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(source);
        await using var connection = Open();
        return ReadBatches(connection, $"SELECT {StoreRows.BatchColumns} FROM batches WHERE source = $source ORDER BY created_at DESC, rowid DESC LIMIT 1", ("$source", source)).SingleOrDefault();
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<BatchRecord>> ListActiveBatchesAsync(CancellationToken cancellationToken)
    {
        await using var connection = Open();
        return ReadBatches(connection, $"SELECT {StoreRows.BatchColumns} FROM batches WHERE status = 'in_progress' ORDER BY created_at, rowid");
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> ListActiveModelsAsync(string? batchId, CancellationToken cancellationToken) =>
        await QueryAsync("""
            SELECT DISTINCT m.model FROM batch_models m JOIN batches b ON b.id = m.batch_id
            WHERE b.status = 'in_progress' AND ($batch IS NULL OR b.id = $batch) AND ($batch IS NOT NULL OR b.mode = 0)
            ORDER BY m.model
            """, r => r.GetString(0), ("$batch", batchId));

    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> ListModelsAsync(string batchId, CancellationToken cancellationToken) =>
        await QueryAsync("SELECT model FROM batch_models WHERE batch_id = $batch ORDER BY model", r => r.GetString(0), ("$batch", batchId));

    /// <inheritdoc />
    public Task<string> CreateBatchAsync(NewBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return WriteAsync(writer =>
        {
            using var command = writer.CreateCommand();
            command.CommandText = """
                INSERT INTO batches (id, format, endpoint, status, source, created_at, priority, expires_at, owner, door, needs_files,
                    input_file_id, completion_window, metadata, model, idempotency_key, idempotency_sha256, budget_nanos, mode)
                VALUES ($id, 0, $endpoint, 'validating', $source, $now, $priority, $expires, $owner, $door, $needs_files,
                    $input_file_id, $completion_window, $metadata, $model, $idempotency_key, $idempotency_sha256, $budget, $mode)
                ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                """;
            var now = _time.GetUtcNow();
            Bind(command, [
                ("$id", batch.Id), ("$endpoint", batch.Endpoint), ("$source", batch.Source), ("$now", now.ToUnixTimeMilliseconds()),
                ("$priority", (int)batch.Priority), ("$expires", batch.CompletionWindow is { } window ? (now + window).ToUnixTimeMilliseconds() : null),
                ("$owner", batch.Owner), ("$door", (int)batch.Door), ("$needs_files", batch.Door is BatchDoor.OpenAI or BatchDoor.Inline ? 1 : 0),
                ("$input_file_id", batch.InputFileId), ("$completion_window", batch.CompletionWindowText), ("$budget", batch.BudgetNanos),
                ("$metadata", batch.Metadata is { Count: > 0 } metadata ? StoreRows.SerializeMetadata(metadata) : null),
                ("$model", batch.Model), ("$idempotency_key", batch.IdempotencyKey), ("$idempotency_sha256", batch.BodySha256), ("$mode", (int)batch.Mode)]);
            if (command.ExecuteNonQuery() == 1)
            {
                return batch.Id;
            }

            (string, object?)[] key = [("$owner", batch.Owner), ("$key", batch.IdempotencyKey)];
            return StoreRows.FirstOfKey(
                batch,
                (string)Scalar(writer, "SELECT id FROM batches WHERE owner = $owner AND idempotency_key = $key", null, key)!,
                Scalar(writer, "SELECT idempotency_sha256 FROM batches WHERE owner = $owner AND idempotency_key = $key", null, key) as string);
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<Page<BatchRecord>> ListBatchesAsync(OwnerScope owner, IReadOnlyCollection<BatchDoor> doors, PageRequest page, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(doors);
        ArgumentNullException.ThrowIfNull(page);
        await using var connection = Open();
        var batches = ReadBatches(connection, PageQuery(StoreRows.BatchColumns, "batches",
                $"($everyone = 1 OR owner IS $owner) AND door IN ({string.Join(", ", doors.Select(d => (int)d))})", page),
            ("$owner", owner.Owner), ("$everyone", owner.Everyone ? 1 : 0), ("$after", page.After), ("$before", page.Before), ("$limit", page.Limit + 1));
        return StoreRows.ToPage(batches, page);
    }

    /// <inheritdoc />
    public async Task<TenantUsage> GetUsageAsync(string? owner, CancellationToken cancellationToken) =>
        (await QueryAsync(StoreRows.UsageQuery, StoreRows.ReadUsage, ("@owner", owner))).Single();

    /// <inheritdoc />
    public async Task<IReadOnlyList<BatchRecord>> ListFinalizingBatchesAsync(CancellationToken cancellationToken)
    {
        await using var connection = Open();
        return ReadBatches(connection, $"SELECT {StoreRows.BatchColumns} FROM batches WHERE status = 'finalizing' ORDER BY rowid");
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<BatchRecord>> ListValidatingBatchesAsync(CancellationToken cancellationToken)
    {
        await using var connection = Open();
        return ReadBatches(connection, $"SELECT {StoreRows.BatchColumns} FROM batches WHERE status = 'validating' ORDER BY rowid");
    }

    /// <inheritdoc />
    public async Task ClearItemsAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        await DeleteItemsAsync(batchId, cancellationToken);
        await WriteAsync(writer => Execute(writer, "DELETE FROM batch_models WHERE batch_id = $id", null, ("$id", batchId)), cancellationToken);
    }

    /// <inheritdoc />
    public Task FinishFinalizingAsync(string batchId, string? outputFileId, string? errorFileId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return WriteAsync(writer => Execute(writer, """
            UPDATE batches SET status = ending, output_file_id = $output, error_file_id = $errors,
                completed_at = CASE WHEN ending = 'completed' THEN $now ELSE completed_at END,
                cancelled_at = CASE WHEN ending = 'cancelled' THEN $now ELSE cancelled_at END
            WHERE id = $id AND status = 'finalizing'
            """, null, ("$id", batchId), ("$output", outputFileId), ("$errors", errorFileId), ("$now", now.ToUnixTimeMilliseconds())), cancellationToken);
    }

    /// <inheritdoc />
    public async Task<FileRecord> AddFileAsync(NewFile file, Stream content, long maxBytes, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(content);
        Directory.CreateDirectory(FilesFolder);
        var path = FilePath(file.Id);
        var partial = path + ".partial";
        long bytes = 0;
        try
        {
            await using (var target = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                var buffer = new byte[1 << 16];
                int read;
                while ((read = await content.ReadAsync(buffer, cancellationToken)) > 0)
                {
                    bytes += read;
                    if (bytes > maxBytes)
                    {
                        throw new FileTooLargeException($"The file is larger than {maxBytes} bytes.");
                    }

                    await target.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                }
            }

            File.Move(partial, path, overwrite: true);
        }
        catch
        {
            File.Delete(partial);
            throw;
        }

        var record = StoreRows.NewFileRecord(file, bytes, _time.GetUtcNow());
        await WriteAsync(writer => Execute(writer, $"INSERT INTO files ({StoreRows.FileColumns}) VALUES ($id, $owner, $filename, $purpose, $bytes, $created, $batch)", null,
            ("$id", record.Id), ("$owner", record.Owner), ("$filename", record.Filename), ("$purpose", record.Purpose), ("$bytes", record.Bytes),
            ("$created", record.CreatedAt.ToUnixTimeMilliseconds()), ("$batch", record.BatchId)), cancellationToken);
        return record;
    }

    /// <inheritdoc />
    public async Task<FileRecord?> GetFileAsync(string fileId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fileId);
        await using var connection = Open();
        return ReadFiles(connection, $"SELECT {StoreRows.FileColumns} FROM files WHERE id = $id", ("$id", fileId)).SingleOrDefault();
    }

    /// <inheritdoc />
    public async Task<Page<FileRecord>> ListFilesAsync(OwnerScope owner, string? purpose, PageRequest page, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(page);
        await using var connection = Open();
        var files = ReadFiles(connection, PageQuery(StoreRows.FileColumns, "files", "($everyone = 1 OR owner IS $owner) AND ($purpose IS NULL OR purpose = $purpose)", page),
            ("$owner", owner.Owner), ("$everyone", owner.Everyone ? 1 : 0), ("$purpose", purpose), ("$after", page.After), ("$before", page.Before), ("$limit", page.Limit + 1));
        return StoreRows.ToPage(files, page);
    }

    /// <inheritdoc />
    public Task<Stream> OpenFileAsync(string fileId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fileId);
        return Task.FromResult<Stream>(new FileStream(FilePath(fileId), FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16, useAsync: true));
    }

    /// <inheritdoc />
    public async Task<bool> DeleteFileAsync(string fileId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fileId);
        var deleted = await WriteAsync(writer => Execute(writer, "DELETE FROM files WHERE id = $id", null, ("$id", fileId)), cancellationToken);
        var path = FilePath(fileId);
        if (File.Exists(path))
        {
            File.Delete(path);
        }

        return deleted == 1;
    }

    private string FilesFolder => _options.Path + ".files";

    private string FilePath(string fileId) =>
        Path.Combine(FilesFolder, fileId.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') ? fileId : throw new ArgumentException($"'{fileId}' is not a file id.", nameof(fileId)));

    /// <summary>
    /// A page by insertion order, newest first unless asked oldest first: <c>after</c> continues in
    /// the listing's order, <c>before</c> goes back to newer ones (read oldest first, then turned around by <see cref="StoreRows.ToPage{T}"/>).
    /// </summary>
    private static string PageQuery(string columns, string table, string filter, PageRequest page) =>
        page.Before is not null
            ? $"SELECT {columns} FROM {table} WHERE {filter} AND rowid > (SELECT rowid FROM {table} WHERE id = $before) ORDER BY rowid LIMIT $limit"
            : page.OldestFirst
                ? $"SELECT {columns} FROM {table} WHERE {filter} AND ($after IS NULL OR rowid > (SELECT rowid FROM {table} WHERE id = $after)) ORDER BY rowid LIMIT $limit"
                : $"SELECT {columns} FROM {table} WHERE {filter} AND ($after IS NULL OR rowid < (SELECT rowid FROM {table} WHERE id = $after)) ORDER BY rowid DESC LIMIT $limit";

    private static List<FileRecord> ReadFiles(SqliteConnection connection, string sql, params (string Name, object? Value)[] parameters) =>
        Query(connection, StoreRows.ReadFile, sql, parameters);

    /// <inheritdoc />
    public Task<IReadOnlyList<DuplicateCustomId>> AddItemsAsync(string batchId, IReadOnlyList<ImportItem> items, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(items);
        return WriteAsync<IReadOnlyList<DuplicateCustomId>>(writer =>
        {
            using var tx = writer.BeginTransaction();
            var priority = Convert.ToInt64(Scalar(writer, "SELECT priority FROM batches WHERE id = $batch AND status = 'validating'", tx, ("$batch", batchId))
                ?? throw new StoreException($"Batch {batchId} is not being validated."));
            var insert = Prepared(writer, """
                INSERT INTO items (batch_id, line, custom_id, model, state, priority) VALUES (?1, ?2, ?3, ?4, 6, ?5)
                ON CONFLICT (batch_id, custom_id) DO NOTHING
                RETURNING id
                """);
            var body = Prepared(writer, "INSERT INTO item_bodies (item_id, body) VALUES (?1, ?2)");
            foreach (var model in items.Select(i => i.Model).Distinct(StringComparer.Ordinal))
            {
                Execute(writer, "INSERT INTO batch_models (batch_id, model) VALUES ($batch, $model) ON CONFLICT DO NOTHING", tx, ("$batch", batchId), ("$model", model));
            }

            List<DuplicateCustomId>? duplicates = null;
            foreach (var item in items)
            {
                if (insert.Bind(1, batchId).Bind(2, item.Line).Bind(3, item.CustomId).Bind(4, item.Model).Bind(5, priority).ExecuteInt64() is { } id)
                {
                    body.Bind(1, id).Bind(2, item.Body).Execute();
                }
                else
                {
                    var first = Scalar(writer, "SELECT line FROM items WHERE batch_id = $batch AND custom_id = $custom_id", tx, ("$batch", batchId), ("$custom_id", item.CustomId));
                    (duplicates ??= []).Add(new DuplicateCustomId(item.Line, item.CustomId, Convert.ToInt64(first)));
                }
            }

            tx.Commit();
            return duplicates ?? (IReadOnlyList<DuplicateCustomId>)[];
        }, cancellationToken);
    }

    /// <inheritdoc />
    public Task AcceptBatchAsync(string batchId, AcceptedInput input, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(input);
        return WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            var changed = Execute(writer, """
                UPDATE batches SET status = 'in_progress', format = $format, endpoint = $endpoint, total = $total,
                    source_sha256 = $sha, source_bytes = $bytes, in_progress_at = $now
                WHERE id = $id AND status = 'validating'
                """,
                tx,
                ("$id", batchId), ("$format", (int)input.Format), ("$endpoint", input.Endpoint), ("$total", input.Total),
                ("$sha", input.Sha256), ("$bytes", input.Bytes), ("$now", Now()));
            if (changed != 1)
            {
                throw new StoreException($"Batch {batchId} is not being validated.");
            }

            // Due from now: items of earlier batches stay ahead within a priority, in the claim index's own order.
            UpdateItemsInSteps(writer, tx, batchId, "state = 0, next_attempt_at = $now", "state = 6", ("$now", Now()));
            tx.Commit();
            return 0;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task RejectBatchAsync(string batchId, IReadOnlyList<InputError> errors, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(errors);
        await DeleteItemsAsync(batchId, cancellationToken);
        await WriteAsync(writer => Execute(writer,
            "UPDATE batches SET status = 'failed', failed_at = $now, errors = $errors WHERE id = $id",
            null, ("$id", batchId), ("$now", Now()), ("$errors", StoreRows.SerializeErrors(errors))), cancellationToken);
    }

    /// <inheritdoc />
    public async Task DeleteBatchAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        await DeleteItemsAsync(batchId, cancellationToken);
        await WriteAsync(writer => Execute(writer, "DELETE FROM native_job_items WHERE job_id IN (SELECT id FROM native_jobs WHERE batch_id = $id); DELETE FROM native_jobs WHERE batch_id = $id; DELETE FROM batch_models WHERE batch_id = $id; DELETE FROM batches WHERE id = $id", null, ("$id", batchId)), cancellationToken);
    }

    /// <inheritdoc />
    public Task<int> ReleaseLeasesAsync(CancellationToken cancellationToken) =>
        WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            // An item of a job still open at its provider was not sent again by the stop: the runner
            // leases it back to that job, and that lease must not count as another attempt.
            Execute(writer, """
                UPDATE items SET attempts = attempts - 1
                WHERE state = 1 AND id IN (SELECT t.item_id FROM native_job_items t JOIN native_jobs j ON j.id = t.job_id WHERE j.status = 0)
                """, tx);
            var released = Execute(writer, "UPDATE items SET state = 0, lease_until = NULL WHERE state = 1", tx);

            // A realtime batch that was cancelling, or past its window, sends nothing more: what was in
            // flight at the stop ends now, as the rest did, so the batch can end.
            var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
            var stopping = new List<string>();
            using (var select = Prepare(writer, tx, "SELECT id FROM batches WHERE mode = 0 AND (status = 'cancelling' OR (status = 'in_progress' AND expired_at IS NOT NULL))"))
            using (var reader = select.ExecuteReader())
            {
                while (reader.Read())
                {
                    stopping.Add(reader.GetString(0));
                }
            }

            foreach (var batchId in stopping)
            {
                var cancelling = Convert.ToInt32(Scalar(writer, "SELECT status = 'cancelling' FROM batches WHERE id = $id", tx, ("$id", batchId)), CultureInfo.InvariantCulture) == 1;
                var ended = Execute(writer, "UPDATE items SET state = $state WHERE batch_id = $id AND state IN (0, 6)", tx,
                    ("$id", batchId), ("$state", (int)(cancelling ? ItemState.Cancelled : ItemState.Expired)));
                Execute(writer, cancelling ? "UPDATE batches SET cancelled = cancelled + $n WHERE id = $id" : "UPDATE batches SET expired = expired + $n WHERE id = $id",
                    tx, ("$id", batchId), ("$n", ended));
                Execute(writer, FinishBatch, tx, ("$id", batchId), ("$now", now));
            }

            tx.Commit();
            return released;
        }, cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<ClaimedItem>> ClaimAsync(string model, string? batchId, int max, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        return WriteAsync<IReadOnlyList<ClaimedItem>>(writer =>
        {
            using var tx = writer.BeginTransaction();
            using var select = Prepare(writer, tx, """
                SELECT i.id, i.line, i.custom_id, i.model, i.attempts, b.body, i.batch_id, i.priority, t.endpoint, i.lease
                FROM items i INDEXED BY ix_items_queued JOIN item_bodies b ON b.item_id = i.id JOIN batches t ON t.id = i.batch_id
                WHERE i.model = $model AND i.state = 0 AND i.next_attempt_at <= $now AND ($batch IS NULL OR i.batch_id = $batch)
                    AND ($batch IS NOT NULL OR t.mode = 0)
                ORDER BY i.priority DESC, i.next_attempt_at, i.id
                LIMIT $max
                """, ("$model", SqliteType.Text), ("$batch", SqliteType.Text), ("$now", SqliteType.Integer), ("$max", SqliteType.Integer));
            select.Parameters["$model"].Value = model;
            select.Parameters["$batch"].Value = (object?)batchId ?? DBNull.Value;
            select.Parameters["$now"].Value = now.ToUnixTimeMilliseconds();
            select.Parameters["$max"].Value = max;
            var claimed = new List<ClaimedItem>();
            using (var reader = select.ExecuteReader())
            {
                while (reader.Read())
                {
                    claimed.Add(new ClaimedItem(
                        reader.GetInt64(0), reader.GetString(6), reader.GetInt64(1), reader.GetString(2), reader.GetString(3),
                        (byte[])reader.GetValue(5), reader.GetInt32(4) + 1, (BatchPriority)reader.GetInt32(7), reader.GetString(8))
                    {
                        Lease = reader.GetInt64(9) + 1,
                    });
                }
            }

            // One statement leases the whole chunk: the same +1 the rows above were read with.
            if (claimed.Count > 0)
            {
                Execute(writer, """
                    UPDATE items SET state = 1, attempts = attempts + 1, lease = lease + 1, lease_until = $until
                    WHERE id IN (SELECT value FROM json_each($ids))
                    """, tx, ("$until", leaseUntil.ToUnixTimeMilliseconds()), ("$ids", "[" + string.Join(',', claimed.Select(item => item.ItemId)) + "]"));
            }

            tx.Commit();
            return claimed;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<DateTimeOffset?> NextDueAsync(string model, string? batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(model);
        await using var connection = Open();
        var due = Scalar(connection, """
            SELECT MIN(i.next_attempt_at) FROM items i JOIN batches t ON t.id = i.batch_id
            WHERE i.model = $model AND i.state = 0 AND ($batch IS NULL OR i.batch_id = $batch) AND ($batch IS NOT NULL OR t.mode = 0)
            """, null,
            ("$model", model), ("$batch", batchId));
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
        WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            var cancel = state == ItemState.Cancelled;
            var marked = Execute(writer, cancel
                    ? "UPDATE batches SET status = 'cancelling', cancelling_at = $now WHERE id = $id AND status IN ('validating', 'in_progress')"
                    : "UPDATE batches SET expired_at = $now WHERE id = $id AND status = 'in_progress' AND expired_at IS NULL",
                tx, ("$id", batchId), ("$now", now.ToUnixTimeMilliseconds()));
            if (marked == 1)
            {
                var ended = UpdateItemsInSteps(writer, tx, batchId, "state = $state, lease_until = NULL", "state IN (0, 6)", ("$state", (int)state));
                Execute(writer, cancel
                        ? "UPDATE batches SET cancelled = cancelled + $n, total = MAX(total, (SELECT COUNT(*) FROM items WHERE batch_id = $id)) WHERE id = $id"
                        : "UPDATE batches SET expired = expired + $n WHERE id = $id",
                    tx, ("$id", batchId), ("$n", ended));
                Execute(writer, FinishBatch, tx, ("$id", batchId), ("$now", now.ToUnixTimeMilliseconds()));
            }

            tx.Commit();
            return 0;
        }, cancellationToken);

    /// <inheritdoc />
    public Task<long> RequeueFailedAsync(string batchId, DateTimeOffset? expiresAt, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            // The batch first gives back what the results of those items counted, then they lose them.
            if (Execute(writer, StoreRows.RequeueFailedBatchSql, tx, ("@id", batchId), ("@expires", expiresAt?.ToUnixTimeMilliseconds())) == 0)
            {
                return 0L;
            }

            Execute(writer, "DELETE FROM results WHERE item_id IN (SELECT id FROM items WHERE batch_id = $id AND state IN (3, 5))", tx, ("$id", batchId));
            var requeued = UpdateItemsInSteps(writer, tx, batchId, "state = 0, attempts = 0, next_attempt_at = 0, lease_until = NULL, last_error = NULL", "state IN (3, 5)");
            tx.Commit();
            return (long)requeued;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public Task SetBudgetAsync(string batchId, long? budgetNanos, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return WriteAsync(writer => Execute(writer, "UPDATE batches SET budget_nanos = $budget WHERE id = $id", null, ("$id", batchId), ("$budget", budgetNanos)), cancellationToken);
    }

    /// <inheritdoc />
    public Task<CommitSummary> CommitAsync(IReadOnlyList<ItemOutcome> outcomes, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(outcomes);
        if (outcomes.Count == 0)
        {
            return Task.FromResult(CommitSummary.None);
        }

        return WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            // Parameters: ?1 item id, ?2 the lease the outcome was decided under, then as named.
            var end = Prepared(writer, "UPDATE items SET state = ?3, lease_until = NULL, last_error = ?4 WHERE id = ?1 AND state = 1 AND lease = ?2");
            var retry = Prepared(writer, "UPDATE items SET state = 0, lease_until = NULL, next_attempt_at = ?3, last_error = ?4 WHERE id = ?1 AND state = 1 AND lease = ?2");
            var release = Prepared(writer, "UPDATE items SET state = 0, lease_until = NULL, attempts = attempts - 1 WHERE id = ?1 AND state = 1 AND lease = ?2");
            var unsent = Prepared(writer, "UPDATE items SET state = ?3, lease_until = NULL, attempts = attempts - 1 WHERE id = ?1 AND state = 1 AND lease = ?2");
            var result = Prepared(writer, """
                INSERT INTO results (item_id, status_code, request_id, body, error_code, error_message, input_tokens, output_tokens, cached_tokens, cost_nanos, latency_ms, finished_at)
                VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                """);
            var finishedAt = now.ToUnixTimeMilliseconds();
            var deltas = new Dictionary<string, StoreRows.BatchDelta>(StringComparer.Ordinal);

            var cancelling = new Dictionary<string, bool>(StringComparer.Ordinal);
            foreach (var next in outcomes)
            {
                var outcome = next;
                var item = outcome.Item;
                var attempt = outcome.Result;
                if (outcome.Kind == OutcomeKind.Released && !IsCancelling(writer, tx, item.BatchId, cancelling))
                {
                    release.Bind(1, item.ItemId).Bind(2, item.Lease).Execute();
                    continue;
                }

                if (outcome.Kind == OutcomeKind.Released)
                {
                    // Handed back after the batch was cancelled: nothing more of it is sent, so it ends here.
                    outcome = outcome with { Kind = OutcomeKind.Cancelled };
                }

                if (outcome.Kind is OutcomeKind.Cancelled or OutcomeKind.Expired)
                {
                    var state = outcome.Kind == OutcomeKind.Cancelled ? ItemState.Cancelled : ItemState.Expired;
                    if (unsent.Bind(1, item.ItemId).Bind(2, item.Lease).Bind(3, (int)state).Execute() == 1)
                    {
                        ref var ended = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(deltas, item.BatchId, out _);
                        ended.AddUnsent(outcome.Kind);
                    }

                    continue;
                }

                var error = outcome.Kind == OutcomeKind.Succeeded ? null : attempt.Describe();
                if (outcome.Kind == OutcomeKind.Retry)
                {
                    retry.Bind(1, item.ItemId).Bind(2, item.Lease).Bind(3, outcome.NextAttemptAt.ToUnixTimeMilliseconds()).Bind(4, error).Execute();
                    continue;
                }

                var succeeded = outcome.Kind == OutcomeKind.Succeeded;
                if (end.Bind(1, item.ItemId).Bind(2, item.Lease).Bind(3, (int)(succeeded ? ItemState.Succeeded : ItemState.Failed)).Bind(4, error).Execute() != 1)
                {
                    // The lease was lost (released and claimed again); the other holder records the answer.
                    continue;
                }

                result.Bind(1, item.ItemId).Bind(2, attempt.StatusCode).Bind(3, attempt.RequestId).Bind(4, attempt.Body)
                    .Bind(5, attempt.ErrorCode).Bind(6, attempt.ErrorMessage).Bind(7, attempt.InputTokens).Bind(8, attempt.OutputTokens)
                    .Bind(9, attempt.CachedTokens).Bind(10, attempt.CostNanos).Bind(11, attempt.LatencyMs).Bind(12, finishedAt)
                    .Execute();

                ref var delta = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(deltas, item.BatchId, out _);
                delta.Add(succeeded, attempt);
            }

            var completed = new List<string>();
            foreach (var (batchId, delta) in deltas)
            {
                Execute(writer, """
                    UPDATE batches SET succeeded = succeeded + $s, failed = failed + $f, cancelled = cancelled + $c, expired = expired + $e,
                        input_tokens = input_tokens + $in, output_tokens = output_tokens + $out, cost_nanos = cost_nanos + $cost, unpriced = unpriced + $unpriced,
                        budget_exceeded = budget_exceeded + $over
                    WHERE id = $id
                    """,
                    tx, ("$id", batchId), ("$s", delta.Succeeded), ("$f", delta.Failed), ("$c", delta.Cancelled), ("$e", delta.Expired),
                    ("$in", delta.InputTokens), ("$out", delta.OutputTokens), ("$cost", delta.CostNanos), ("$unpriced", delta.Unpriced), ("$over", delta.BudgetExceeded));
                var done = Execute(writer, FinishBatch, tx, ("$id", batchId), ("$now", now.ToUnixTimeMilliseconds()));
                if (done > 0)
                {
                    completed.Add(batchId);
                }
            }

            tx.Commit();
            return completed.Count == 0 ? CommitSummary.None : new CommitSummary(completed);
        }, cancellationToken);
    }

    /// <summary>Whether <paramref name="batchId"/> is being cancelled, asked once per commit.</summary>
    private static bool IsCancelling(SqliteConnection writer, SqliteTransaction tx, string batchId, Dictionary<string, bool> known)
    {
        if (!known.TryGetValue(batchId, out var cancelling))
        {
            cancelling = Scalar(writer, "SELECT status FROM batches WHERE id = $id", tx, ("$id", batchId)) is "cancelling";
            known[batchId] = cancelling;
        }

        return cancelling;
    }

    /// <inheritdoc />
    public IAsyncEnumerable<ItemResult> ReadResultsAsync(string batchId, long skip, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentOutOfRangeException.ThrowIfNegative(skip);
        return StoreRows.PagedAsync((after, offset, _) => QueryAsync($"""
            {StoreRows.ResultColumns}
            WHERE i.batch_id = $batch AND i.line > $after
            ORDER BY i.line
            LIMIT $limit OFFSET $offset
            """, StoreRows.ReadResult, ("$batch", batchId), ("$after", after), ("$limit", _options.ResultPageSize), ("$offset", offset)),
            result => result.Line, _options.ResultPageSize, skip, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<ItemResult?> GetResultAsync(string batchId, string customId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(customId);
        await using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"{StoreRows.ResultColumns} WHERE i.batch_id = $batch AND i.custom_id = $custom_id";
        Bind(command, [("$batch", batchId), ("$custom_id", customId)]);
        using var reader = command.ExecuteReader();
        return reader.Read() ? StoreRows.ReadResult(reader) : null;
    }

    /// <inheritdoc />
    public async Task<BatchActivity> GetActivityAsync(string batchId, TimeSpan bucket, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        var width = Math.Max(1, (long)bucket.TotalMilliseconds);
        return new BatchActivity(
            await QueryAsync(StoreRows.TimelineQuery, r => StoreRows.ReadBucket(r, width), ("@batch", batchId), ("@width", width)),
            await QueryAsync(StoreRows.ErrorsQuery, r => new ErrorCount(r.GetString(0), r.GetInt64(1)), ("@batch", batchId)),
            await QueryAsync(StoreRows.LatencyQuery, r => r.GetInt32(0), ("@batch", batchId)));
    }

    /// <inheritdoc />
    public IAsyncEnumerable<ImportItem> ReadRequestsAsync(string batchId, IReadOnlyCollection<ItemState> states, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(states);
        var wanted = string.Join(", ", states.Select(state => (int)state));
        return StoreRows.PagedAsync((after, _, _) => QueryAsync($"""
            SELECT i.line, i.custom_id, i.model, b.body
            FROM items i JOIN item_bodies b ON b.item_id = i.id
            WHERE i.batch_id = $batch AND i.line > $after AND i.state IN ({wanted})
            ORDER BY i.line
            LIMIT $limit
            """, r => new ImportItem(r.GetInt64(0), r.GetString(1), r.GetString(2), (byte[])r.GetValue(3)), ("$batch", batchId), ("$after", after), ("$limit", _options.ResultPageSize)),
            request => request.Line, _options.ResultPageSize, 0, cancellationToken);
    }

    /// <inheritdoc />
    public Task<NativeJob> AddNativeJobAsync(string batchId, string upstream, string providerBatchId, IReadOnlyList<long> itemIds, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(upstream);
        ArgumentNullException.ThrowIfNull(providerBatchId);
        ArgumentNullException.ThrowIfNull(itemIds);
        return WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            var id = (long)Scalar(writer, """
                INSERT INTO native_jobs (batch_id, upstream, provider_batch_id, status, created_at) VALUES ($batch, $upstream, $provider, 0, $now)
                RETURNING id
                """, tx, ("$batch", batchId), ("$upstream", upstream), ("$provider", providerBatchId), ("$now", now.ToUnixTimeMilliseconds()))!;
            using var insert = Prepare(writer, tx, "INSERT INTO native_job_items (job_id, item_id) VALUES ($job, $item)", ("$job", SqliteType.Integer), ("$item", SqliteType.Integer));
            insert.Parameters["$job"].Value = id;
            foreach (var item in itemIds)
            {
                insert.Parameters["$item"].Value = item;
                insert.ExecuteNonQuery();
            }

            tx.Commit();
            return StoreRows.NewNativeJob(id, batchId, upstream, providerBatchId, now);
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<NativeJob>> ListOpenNativeJobsAsync(CancellationToken cancellationToken)
    {
        await using var connection = Open();
        return ReadNativeJobs(connection, $"SELECT {StoreRows.NativeJobColumns} FROM native_jobs WHERE status = 0 ORDER BY id");
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<NativeJob>> ListNativeJobsAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        await using var connection = Open();
        return ReadNativeJobs(connection, $"SELECT {StoreRows.NativeJobColumns} FROM native_jobs WHERE batch_id = $batch ORDER BY id", ("$batch", batchId));
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<long>> ListNativeJobItemsAsync(long jobId, CancellationToken cancellationToken) =>
        await QueryAsync("SELECT item_id FROM native_job_items WHERE job_id = $job ORDER BY item_id", r => r.GetInt64(0), ("$job", jobId));

    /// <inheritdoc />
    public Task UpdateNativeJobAsync(long jobId, NativeJobStatus status, bool cancelRequested, CancellationToken cancellationToken) =>
        WriteAsync(writer => Execute(writer, "UPDATE native_jobs SET status = $status, cancel_requested = $cancel WHERE id = $id", null,
            ("$id", jobId), ("$status", (int)status), ("$cancel", cancelRequested ? 1 : 0)), cancellationToken);

    private static List<NativeJob> ReadNativeJobs(SqliteConnection connection, string sql, params (string Name, object? Value)[] parameters) =>
        Query(connection, StoreRows.ReadNativeJob, sql, parameters);

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        await _writeLock.WaitAsync();
        try
        {
            if (_writer is { } writer)
            {
                foreach (var statement in _prepared.Values)
                {
                    statement.Dispose();
                }

                _prepared.Clear();

                // Fold the write-ahead log back into the database so the state file stands alone.
                Execute(writer, "PRAGMA wal_checkpoint(TRUNCATE);");
                await writer.DisposeAsync();
                _writer = null;
            }
        }
        finally
        {
            _writeLock.Release();
        }

        SqliteConnection.ClearAllPools();
        _writeLock.Dispose();
    }

    /// <summary>
    /// Updates the items of one batch that match <paramref name="filter"/>, 20,000 lines per statement,
    /// all in the caller's transaction; returns how many changed. SQLite keeps a statement's undo
    /// journal in memory, so one statement over a million items would hold tens of megabytes at once.
    /// </summary>
    private static int UpdateItemsInSteps(SqliteConnection writer, SqliteTransaction tx, string batchId, string set, string filter, params (string Name, object? Value)[] parameters)
    {
        const long Step = 20_000;
        var last = Scalar(writer, "SELECT MAX(line) FROM items WHERE batch_id = $id", tx, ("$id", batchId)) is long max ? max : 0;
        var changed = 0;
        for (var from = 0L; from < last; from += Step)
        {
            changed += Execute(writer, $"UPDATE items SET {set} WHERE batch_id = $id AND line > $from AND line <= $to AND {filter}", tx,
                [("$id", batchId), ("$from", from), ("$to", from + Step), .. parameters]);
        }

        return changed;
    }

    private async Task DeleteItemsAsync(string batchId, CancellationToken cancellationToken)
    {
        // Small transactions, so a large rejected batch never holds the writer for long.
        while (await WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            var ids = "SELECT id FROM items WHERE batch_id = $batch ORDER BY id LIMIT 5000";
            Execute(writer, $"DELETE FROM results WHERE item_id IN ({ids})", tx, ("$batch", batchId));
            Execute(writer, $"DELETE FROM item_bodies WHERE item_id IN ({ids})", tx, ("$batch", batchId));
            var deleted = Execute(writer, $"DELETE FROM items WHERE id IN ({ids})", tx, ("$batch", batchId));
            tx.Commit();
            return deleted;
        }, cancellationToken) > 0)
        {
        }
    }

    private async Task<T> WriteAsync<T>(Func<SqliteConnection, T> write, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            var writer = _writer ?? throw new InvalidOperationException("The store is not initialised.");
            return write(writer);
        }
        catch (SqliteException ex)
        {
            throw new StoreException($"The state file {_options.Path} could not be written: {ex.Message}", ex);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>The write connection's prepared statement for <paramref name="sql"/>; call under the write lock.</summary>
    private SqliteStatement Prepared(SqliteConnection writer, string sql)
    {
        if (!_prepared.TryGetValue(sql, out var statement))
        {
            statement = SqliteStatement.Prepare(writer, sql);
            _prepared.Add(sql, statement);
        }

        return statement;
    }

    private SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        try
        {
            connection.Open();
            // NORMAL is durable against a killed process in WAL mode; only a power loss can take the last commits.
            Execute(connection, $"PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = {(int)_options.BusyTimeout.TotalMilliseconds}; PRAGMA temp_store = MEMORY;");
            return connection;
        }
        catch (SqliteException ex)
        {
            connection.Dispose();
            throw new StoreException($"The state file {_options.Path} could not be opened: {ex.Message}", ex);
        }
    }

    private long Now() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Reads every row of <paramref name="sql"/> on a pooled connection of its own.</summary>
    private async Task<List<T>> QueryAsync<T>(string sql, Func<System.Data.Common.DbDataReader, T> read, params (string Name, object? Value)[] parameters)
    {
        await using var connection = Open();
        return Query(connection, read, sql, parameters);
    }

    private static List<BatchRecord> ReadBatches(SqliteConnection connection, string sql, params (string Name, object? Value)[] parameters) =>
        Query(connection, StoreRows.ReadBatch, sql, parameters);

    /// <summary>Reads every row of <paramref name="sql"/>, each as <paramref name="read"/> makes it.</summary>
    private static List<T> Query<T>(SqliteConnection connection, Func<System.Data.Common.DbDataReader, T> read, string sql, params (string Name, object? Value)[] parameters)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        Bind(command, parameters);
        using var reader = command.ExecuteReader();
        var rows = new List<T>();
        while (reader.Read())
        {
            rows.Add(read(reader));
        }

        return rows;
    }

    private static SqliteCommand Prepare(SqliteConnection connection, SqliteTransaction tx, string sql, params (string Name, SqliteType Type)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = tx;
        foreach (var (name, type) in parameters)
        {
            command.Parameters.Add(name, type);
        }

        return command;
    }

    private static int Execute(SqliteConnection connection, string sql, SqliteTransaction? tx = null, params (string Name, object? Value)[] parameters)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = tx;
        Bind(command, parameters);
        return command.ExecuteNonQuery();
    }

    private static object? Scalar(SqliteConnection connection, string sql, SqliteTransaction? tx = null, params (string Name, object? Value)[] parameters)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = tx;
        Bind(command, parameters);
        return command.ExecuteScalar();
    }

    private static void Bind(SqliteCommand command, (string Name, object? Value)[] parameters)
    {
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }
    }

    /// <summary>The schema, one step per version: a file at version n runs the steps after n, in one transaction.</summary>
    private static readonly string[] Migrations = [SchemaVersion1, SchemaVersion2, SchemaVersion3, SchemaVersion4, SchemaVersion5, SchemaVersion6, SchemaVersion7];

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

    private const string SchemaVersion1 = """
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
        CREATE INDEX ix_items_queued ON items (model, priority DESC, next_attempt_at) WHERE state = 0;
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
