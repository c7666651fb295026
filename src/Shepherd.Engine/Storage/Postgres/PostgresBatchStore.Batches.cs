using Npgsql;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

public sealed partial class PostgresBatchStore
{
    private static readonly string ActiveBatches = $"SELECT {StoreRows.BatchColumns} FROM batches WHERE status = {StoredStatus.InProgress} ORDER BY created_at, seq";

    private static readonly string ActiveModels = $"""
        SELECT DISTINCT m.model FROM batch_models m JOIN batches b ON b.id = m.batch_id
        WHERE b.status = {StoredStatus.InProgress} AND (@batch::text IS NULL OR b.id = @batch) AND (@batch::text IS NOT NULL OR b.mode <> {(int)BatchMode.Native})
        ORDER BY m.model
        """;

    private static readonly string InsertBatch = $"""
        INSERT INTO batches (id, format, endpoint, status, source, created_at, priority, expires_at, owner, door, needs_files,
            input_file_id, completion_window, metadata, model, idempotency_key, idempotency_sha256, budget_nanos, mode, cache_use, output_schema, max_reasks, importer)
        VALUES (@id, 0, @endpoint, {StoredStatus.Validating}, @source, @now, @priority, @expires, @owner, @door, @needs_files,
            @input_file_id, @completion_window, @metadata, @model, @idempotency_key, @idempotency_sha256, @budget, @mode, @cache_use, @output_schema, @max_reasks, @node)
        ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        """;

    private static readonly string FinalizingBatches = $"SELECT {StoreRows.BatchColumns} FROM batches WHERE status = {StoredStatus.Finalizing} ORDER BY seq";

    private static readonly string TakeOverValidating = $"""
        UPDATE batches SET importer = @node
        WHERE status = {StoredStatus.Validating} AND (importer IS NULL OR importer = @node
            OR importer NOT IN (SELECT name FROM nodes WHERE heartbeat_at >= @alive))
        RETURNING {StoreRows.BatchColumns}
        """;

    /// <inheritdoc />
    public Task<BatchRecord?> GetBatchAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return FirstBatchAsync(StoreSql.BatchById, cancellationToken, ("id", batchId));
    }

    /// <inheritdoc />
    public Task<BatchRecord?> FindBatchBySourceAsync(string source, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(source);
        return FirstBatchAsync($"SELECT {StoreRows.BatchColumns} FROM batches WHERE source = @source ORDER BY created_at DESC, seq DESC LIMIT 1", cancellationToken, ("source", source));
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<BatchRecord>> ListActiveBatchesAsync(CancellationToken cancellationToken) =>
        await QueryAsync(ActiveBatches, StoreRows.ReadBatch, cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> ListActiveModelsAsync(string? batchId, CancellationToken cancellationToken) =>
        await QueryAsync(ActiveModels, r => r.GetString(0), cancellationToken, ("batch", batchId));

    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> ListModelsAsync(string batchId, CancellationToken cancellationToken) =>
        await QueryAsync(StoreSql.BatchModels, r => r.GetString(0), cancellationToken, ("batch", batchId));

    /// <inheritdoc />
    public Task<string> CreateBatchAsync(NewBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var now = _time.GetUtcNow();
        return InTransactionAsync(async (connection, tx) =>
        {
            var created = await ExecuteAsync(connection, tx, InsertBatch, cancellationToken,
                ("id", batch.Id), ("endpoint", batch.Endpoint), ("source", batch.Source), ("now", now.ToUnixTimeMilliseconds()),
                ("priority", (int)batch.Priority), ("expires", batch.CompletionWindow is { } window ? (now + window).ToUnixTimeMilliseconds() : null),
                ("owner", batch.Owner), ("door", (int)batch.Door), ("needs_files", batch.Door is BatchDoor.OpenAI or BatchDoor.Inline),
                ("input_file_id", batch.InputFileId), ("completion_window", batch.CompletionWindowText), ("budget", batch.BudgetNanos),
                ("metadata", batch.Metadata is { Count: > 0 } metadata ? StoreRows.SerializeMetadata(metadata) : null),
                ("model", batch.Model), ("idempotency_key", batch.IdempotencyKey), ("idempotency_sha256", batch.BodySha256), ("mode", (int)batch.Mode), ("cache_use", (int)batch.Cache),
                ("output_schema", batch.OutputSchema), ("max_reasks", batch.MaxReasks), ("node", NodeName));
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
    public async Task<IReadOnlyList<BatchRecord>> ListFinalizingBatchesAsync(CancellationToken cancellationToken) =>
        await QueryAsync(FinalizingBatches, StoreRows.ReadBatch, cancellationToken);

    /// <summary>
    /// Batches whose input was being read by this node in an earlier life, or by a node that has
    /// died: each is taken over by this node as it is listed, so only one node reads it again.
    /// </summary>
    public async Task<IReadOnlyList<BatchRecord>> ListValidatingBatchesAsync(CancellationToken cancellationToken) =>
        await QueryAsync(TakeOverValidating, StoreRows.ReadBatch, cancellationToken, ("node", NodeName), ("alive", Alive()));

    /// <inheritdoc />
    public Task ClearItemsAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return DeleteItemsAsync(batchId, StoreSql.ClearBatchModels, cancellationToken);
    }

    /// <inheritdoc />
    public Task FinishFinalizingAsync(string batchId, string? outputFileId, string? errorFileId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return WithConnectionAsync(connection => ExecuteAsync(connection, null, StoreSql.FinishFinalizing, cancellationToken,
            ("id", batchId), ("output", outputFileId), ("errors", errorFileId), ("now", now.ToUnixTimeMilliseconds())), cancellationToken);
    }

    private static readonly string QueueStaged =
        $"UPDATE items SET {StoreSql.QueueStaged("@id", "@now")} WHERE batch_id = @id AND state = {(int)ItemState.Staged}";

    /// <inheritdoc />
    public Task AcceptBatchAsync(string batchId, AcceptedInput input, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(input);
        var now = Now();
        return InTransactionAsync(async (connection, tx) =>
        {
            var changed = await ExecuteAsync(connection, tx, StoreSql.AcceptBatch, cancellationToken,
                ("id", batchId), ("format", (int)input.Format), ("endpoint", input.Endpoint), ("total", input.Total),
                ("sha", input.Sha256), ("bytes", input.Bytes), ("now", now));
            if (changed != 1)
            {
                throw new StoreException($"Batch {batchId} is not being validated.");
            }

            // Due from now: items of earlier batches stay ahead within a priority, in the claim index's own order.
            await ExecuteAsync(connection, tx, QueueStaged, cancellationToken, ("id", batchId), ("now", now));
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
        await WithConnectionAsync(connection => ExecuteAsync(connection, null, StoreSql.RejectBatch, cancellationToken,
            ("id", batchId), ("now", Now()), ("errors", StoreRows.SerializeErrors(errors))), cancellationToken);
    }

    /// <inheritdoc />
    public async Task DeleteBatchAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        await DeleteItemsAsync(batchId, null, cancellationToken);
        await WithConnectionAsync(connection => ExecuteAsync(connection, null, StoreSql.DeleteBatch, cancellationToken, ("batch", batchId)), cancellationToken);
    }

    private static readonly string EndUnsentOfBatch =
        $"UPDATE items SET state = @state, lease_until = NULL, leased_by = NULL WHERE batch_id = @id AND state IN ({(int)ItemState.Queued}, {(int)ItemState.Staged})";

    /// <inheritdoc />
    public Task EndUnsentAsync(string batchId, ItemState ending, DateTimeOffset now, CancellationToken cancellationToken) =>
        EndUnsentCoreAsync(batchId ?? throw new ArgumentNullException(nameof(batchId)), ending, now, cancellationToken);

    private Task<int> EndUnsentCoreAsync(string batchId, ItemState state, DateTimeOffset now, CancellationToken cancellationToken) =>
        InTransactionAsync(async (connection, tx) =>
        {
            var cancel = state == ItemState.Cancelled;
            var at = now.ToUnixTimeMilliseconds();
            var marked = await ExecuteAsync(connection, tx, cancel ? StoreSql.MarkCancelling : StoreSql.MarkExpired, cancellationToken, ("id", batchId), ("now", at));
            if (marked == 1)
            {
                var ended = await ExecuteAsync(connection, tx, EndUnsentOfBatch, cancellationToken,
                    ("id", batchId), ("state", (int)state));
                await ExecuteAsync(connection, tx, cancel
                        ? "UPDATE batches SET cancelled = cancelled + @n, total = GREATEST(total, (SELECT COUNT(*) FROM items WHERE batch_id = @id)) WHERE id = @id"
                        : StoreSql.AddExpired,
                    cancellationToken, ("id", batchId), ("n", (long)ended));
                await FinishBatchAsync(connection, tx, batchId, at, cancellationToken);
                await NotifyAsync(connection, tx, cancellationToken);
            }

            return 0;
        }, cancellationToken);

    private static readonly string RequeueItems = $"""
        UPDATE items SET state = {(int)ItemState.Queued}, attempts = 0, reasks = 0, next_attempt_at = 0, lease_until = NULL, leased_by = NULL, last_error = NULL
        WHERE batch_id = @id AND state IN ({(int)ItemState.Failed}, {(int)ItemState.Expired})
        """;

    /// <inheritdoc />
    public Task<long> RequeueFailedAsync(string batchId, DateTimeOffset? expiresAt, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return InTransactionAsync(async (connection, tx) =>
        {
            // The batch first gives back what the results of those items counted, then they lose them.
            if (await ExecuteAsync(connection, tx, StoreSql.RequeueFailedBatch, cancellationToken, ("id", batchId), ("expires", expiresAt?.ToUnixTimeMilliseconds())) == 0)
            {
                return 0L;
            }

            await ExecuteAsync(connection, tx, StoreSql.DeleteRequeuedResults, cancellationToken, ("id", batchId));
            var requeued = await ExecuteAsync(connection, tx, RequeueItems, cancellationToken, ("id", batchId));
            await NotifyAsync(connection, tx, cancellationToken);
            return (long)requeued;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public Task SetBudgetAsync(string batchId, long? budgetNanos, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return InTransactionAsync((connection, tx) => ExecuteAsync(connection, tx, StoreSql.SetBudget, cancellationToken, ("id", batchId), ("budget", budgetNanos)), cancellationToken);
    }

    /// <inheritdoc />
    public Task SetOutputRulesAsync(string batchId, string? outputSchema, int? maxReasks, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return InTransactionAsync((connection, tx) => ExecuteAsync(connection, tx, StoreSql.SetOutputRules, cancellationToken, ("id", batchId), ("schema", outputSchema), ("reasks", maxReasks)), cancellationToken);
    }

    /// <inheritdoc />
    public Task SetCacheUseAsync(string batchId, CacheUse use, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return InTransactionAsync((connection, tx) => ExecuteAsync(connection, tx, StoreSql.SetCacheUse, cancellationToken, ("id", batchId), ("use", (int)use)), cancellationToken);
    }

    /// <inheritdoc />
    public Task SetPlanAsync(string batchId, BatchMode mode, DateTimeOffset? expiresAt, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return InTransactionAsync(async (connection, tx) =>
        {
            await ExecuteAsync(connection, tx, StoreSql.SetPlan, cancellationToken, ("id", batchId), ("mode", (int)mode), ("expires", expiresAt?.ToUnixTimeMilliseconds()));
            return await ExecuteAsync(connection, tx, StoreSql.QueuedToModeTier, cancellationToken, ("id", batchId));
        }, cancellationToken);
    }

    private static readonly string FinishBatch = $"""
        WITH ending AS (
            SELECT id, CASE WHEN status = {StoredStatus.Cancelling} THEN {StoredStatus.Cancelled} WHEN expired_at IS NOT NULL THEN {StoredStatus.Expired} ELSE {StoredStatus.Completed} END AS ending
            FROM batches WHERE id = @id AND status IN ({StoredStatus.InProgress}, {StoredStatus.Cancelling}) AND succeeded + failed + cancelled + expired >= total)
        UPDATE batches b SET
            ending = e.ending,
            status = CASE WHEN b.needs_files THEN {StoredStatus.Finalizing} ELSE e.ending END,
            finalizing_at = CASE WHEN b.needs_files THEN @now ELSE b.finalizing_at END,
            completed_at = CASE WHEN NOT b.needs_files AND e.ending = {StoredStatus.Completed} THEN @now ELSE b.completed_at END,
            cancelled_at = CASE WHEN NOT b.needs_files AND e.ending = {StoredStatus.Cancelled} THEN @now ELSE b.cancelled_at END
        FROM ending e WHERE b.id = e.id
        RETURNING b.id
        """;

    /// <summary>
    /// Ends a batch once every item has ended: it will end completed, cancelled or expired.
    /// Batches of the API doors first become finalizing (their result files are written); the
    /// others take their end at once. Returns whether the batch ended here.
    /// </summary>
    private static async Task<bool> FinishBatchAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string batchId, long now, CancellationToken cancellationToken) =>
        await ScalarAsync(connection, tx, FinishBatch, cancellationToken, ("id", batchId), ("now", now)) is not null;
}
