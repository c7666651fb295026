using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

public sealed partial class SqliteBatchStore
{
    /// <summary>
    /// Ends a batch once every item has ended: it will end completed, cancelled or expired.
    /// Batches of the API doors first become finalizing (their result files are written);
    /// the others take their end at once.
    /// </summary>
    private static readonly string FinishBatch = $"""
        UPDATE batches SET ending = CASE WHEN status = {StoredStatus.Cancelling} THEN {StoredStatus.Cancelled} WHEN expired_at IS NOT NULL THEN {StoredStatus.Expired} ELSE {StoredStatus.Completed} END
        WHERE id = $id AND status IN ({StoredStatus.InProgress}, {StoredStatus.Cancelling}) AND succeeded + failed + cancelled + expired >= total;
        UPDATE batches SET
            status = CASE WHEN needs_files = 1 THEN {StoredStatus.Finalizing} ELSE ending END,
            finalizing_at = CASE WHEN needs_files = 1 THEN $now ELSE finalizing_at END,
            completed_at = CASE WHEN needs_files = 0 AND ending = {StoredStatus.Completed} THEN $now ELSE completed_at END,
            cancelled_at = CASE WHEN needs_files = 0 AND ending = {StoredStatus.Cancelled} THEN $now ELSE cancelled_at END
        WHERE id = $id AND status IN ({StoredStatus.InProgress}, {StoredStatus.Cancelling}) AND ending IS NOT NULL
        """;

    private static readonly string ActiveBatches = $"SELECT {StoreRows.BatchColumns} FROM batches WHERE status = {StoredStatus.InProgress} ORDER BY created_at, rowid";

    private static readonly string ActiveModels = $"""
        SELECT DISTINCT m.model FROM batch_models m JOIN batches b ON b.id = m.batch_id
        WHERE b.status = {StoredStatus.InProgress} AND ($batch IS NULL OR b.id = $batch) AND ($batch IS NOT NULL OR b.mode <> {(int)BatchMode.Native})
        ORDER BY m.model
        """;

    private static readonly string InsertBatch = $"""
        INSERT INTO batches (id, format, endpoint, status, source, created_at, priority, expires_at, owner, door, needs_files,
            input_file_id, completion_window, metadata, model, idempotency_key, idempotency_sha256, budget_nanos, mode, cache_use, output_schema, max_reasks)
        VALUES ($id, 0, $endpoint, {StoredStatus.Validating}, $source, $now, $priority, $expires, $owner, $door, $needs_files,
            $input_file_id, $completion_window, $metadata, $model, $idempotency_key, $idempotency_sha256, $budget, $mode, $cache_use, $output_schema, $max_reasks)
        ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        """;

    private static readonly string FinalizingBatches = $"SELECT {StoreRows.BatchColumns} FROM batches WHERE status = {StoredStatus.Finalizing} ORDER BY rowid";

    private static readonly string ValidatingBatches = $"SELECT {StoreRows.BatchColumns} FROM batches WHERE status = {StoredStatus.Validating} ORDER BY rowid";

    /// <inheritdoc />
    public async Task<BatchRecord?> GetBatchAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        await using var connection = Open();
        return ReadBatches(connection, StoreSql.BatchById, ("@id", batchId)).SingleOrDefault();
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
        return ReadBatches(connection, ActiveBatches);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> ListActiveModelsAsync(string? batchId, CancellationToken cancellationToken) =>
        await QueryAsync(ActiveModels, r => r.GetString(0), ("$batch", batchId));

    /// <inheritdoc />
    public async Task<IReadOnlyList<string>> ListModelsAsync(string batchId, CancellationToken cancellationToken) =>
        await QueryAsync(StoreSql.BatchModels, r => r.GetString(0), ("@batch", batchId));

    /// <inheritdoc />
    public Task<string> CreateBatchAsync(NewBatch batch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return WriteAsync(writer =>
        {
            using var command = writer.CreateCommand();
            command.CommandText = InsertBatch;
            var now = _time.GetUtcNow();
            Bind(command, [
                ("$id", batch.Id), ("$endpoint", batch.Endpoint), ("$source", batch.Source), ("$now", now.ToUnixTimeMilliseconds()),
                ("$priority", (int)batch.Priority), ("$expires", batch.CompletionWindow is { } window ? (now + window).ToUnixTimeMilliseconds() : null),
                ("$owner", batch.Owner), ("$door", (int)batch.Door), ("$needs_files", batch.Door is BatchDoor.OpenAI or BatchDoor.Inline ? 1 : 0),
                ("$input_file_id", batch.InputFileId), ("$completion_window", batch.CompletionWindowText), ("$budget", batch.BudgetNanos),
                ("$metadata", batch.Metadata is { Count: > 0 } metadata ? StoreRows.SerializeMetadata(metadata) : null),
                ("$model", batch.Model), ("$idempotency_key", batch.IdempotencyKey), ("$idempotency_sha256", batch.BodySha256), ("$mode", (int)batch.Mode), ("$cache_use", (int)batch.Cache),
                ("$output_schema", batch.OutputSchema), ("$max_reasks", batch.MaxReasks)]);
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
    public async Task<IReadOnlyList<BatchRecord>> ListFinalizingBatchesAsync(CancellationToken cancellationToken)
    {
        await using var connection = Open();
        return ReadBatches(connection, FinalizingBatches);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<BatchRecord>> ListValidatingBatchesAsync(CancellationToken cancellationToken)
    {
        await using var connection = Open();
        return ReadBatches(connection, ValidatingBatches);
    }

    /// <inheritdoc />
    public async Task ClearItemsAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        await DeleteItemsAsync(batchId, cancellationToken);
        await WriteAsync(writer => Execute(writer, StoreSql.ClearBatchModels, null, ("@batch", batchId)), cancellationToken);
    }

    /// <inheritdoc />
    public Task FinishFinalizingAsync(string batchId, string? outputFileId, string? errorFileId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return WriteAsync(writer => Execute(writer, StoreSql.FinishFinalizing, null,
            ("@id", batchId), ("@output", outputFileId), ("@errors", errorFileId), ("@now", now.ToUnixTimeMilliseconds())), cancellationToken);
    }

    /// <inheritdoc />
    public Task AcceptBatchAsync(string batchId, AcceptedInput input, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(input);
        return WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            var changed = Execute(writer, StoreSql.AcceptBatch, tx,
                ("@id", batchId), ("@format", (int)input.Format), ("@endpoint", input.Endpoint), ("@total", input.Total),
                ("@sha", input.Sha256), ("@bytes", input.Bytes), ("@now", Now()));
            if (changed != 1)
            {
                throw new StoreException($"Batch {batchId} is not being validated.");
            }

            // Due from now: items of earlier batches stay ahead within a priority, in the claim index's own order.
            UpdateItemsInSteps(writer, tx, batchId, StoreSql.QueueStaged("$id", "$now"), $"state = {(int)ItemState.Staged}", ("$now", Now()));
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
        await WriteAsync(writer => Execute(writer, StoreSql.RejectBatch, null,
            ("@id", batchId), ("@now", Now()), ("@errors", StoreRows.SerializeErrors(errors))), cancellationToken);
    }

    /// <inheritdoc />
    public async Task DeleteBatchAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        await DeleteItemsAsync(batchId, cancellationToken);
        await WriteAsync(writer => Execute(writer, StoreSql.DeleteBatch, null, ("@batch", batchId)), cancellationToken);
    }

    /// <inheritdoc />
    public Task EndUnsentAsync(string batchId, ItemState ending, DateTimeOffset now, CancellationToken cancellationToken) =>
        EndUnsentCoreAsync(batchId ?? throw new ArgumentNullException(nameof(batchId)), ending, now, cancellationToken);

    private Task<int> EndUnsentCoreAsync(string batchId, ItemState state, DateTimeOffset now, CancellationToken cancellationToken) =>
        WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            var cancel = state == ItemState.Cancelled;
            var marked = Execute(writer, cancel ? StoreSql.MarkCancelling : StoreSql.MarkExpired, tx, ("@id", batchId), ("@now", now.ToUnixTimeMilliseconds()));
            if (marked == 1)
            {
                var ended = UpdateItemsInSteps(writer, tx, batchId, "state = $state, lease_until = NULL", $"state IN ({(int)ItemState.Queued}, {(int)ItemState.Staged})", ("$state", (int)state));
                Execute(writer, cancel
                        ? "UPDATE batches SET cancelled = cancelled + @n, total = MAX(total, (SELECT COUNT(*) FROM items WHERE batch_id = @id)) WHERE id = @id"
                        : StoreSql.AddExpired,
                    tx, ("@id", batchId), ("@n", ended));
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
            if (Execute(writer, StoreSql.RequeueFailedBatch, tx, ("@id", batchId), ("@expires", expiresAt?.ToUnixTimeMilliseconds())) == 0)
            {
                return 0L;
            }

            Execute(writer, StoreSql.DeleteRequeuedResults, tx, ("@id", batchId));
            var requeued = UpdateItemsInSteps(writer, tx, batchId,
                $"state = {(int)ItemState.Queued}, attempts = 0, reasks = 0, next_attempt_at = 0, lease_until = NULL, last_error = NULL", $"state IN ({(int)ItemState.Failed}, {(int)ItemState.Expired})");
            tx.Commit();
            return (long)requeued;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public Task SetBudgetAsync(string batchId, long? budgetNanos, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return WriteAsync(writer => Execute(writer, StoreSql.SetBudget, null, ("@id", batchId), ("@budget", budgetNanos)), cancellationToken);
    }

    /// <inheritdoc />
    public Task SetOutputRulesAsync(string batchId, string? outputSchema, int? maxReasks, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return WriteAsync(writer => Execute(writer, StoreSql.SetOutputRules, null, ("@id", batchId), ("@schema", outputSchema), ("@reasks", maxReasks)), cancellationToken);
    }

    /// <inheritdoc />
    public Task SetCacheUseAsync(string batchId, CacheUse use, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return WriteAsync(writer => Execute(writer, StoreSql.SetCacheUse, null, ("@id", batchId), ("@use", (int)use)), cancellationToken);
    }

    /// <inheritdoc />
    public Task SetPlanAsync(string batchId, BatchMode mode, DateTimeOffset? expiresAt, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            Execute(writer, StoreSql.SetPlan, tx, ("@id", batchId), ("@mode", (int)mode), ("@expires", expiresAt?.ToUnixTimeMilliseconds()));
            var moved = Execute(writer, StoreSql.QueuedToModeTier, tx, ("@id", batchId));
            tx.Commit();
            return moved;
        }, cancellationToken);
    }
}
