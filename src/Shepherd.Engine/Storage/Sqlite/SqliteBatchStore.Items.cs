using Microsoft.Data.Sqlite;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

public sealed partial class SqliteBatchStore
{
    private static readonly string PriorityOfValidating = $"SELECT priority FROM batches WHERE id = $batch AND status = {StoredStatus.Validating}";

    /// <summary>Stages one imported item (parameters by position); returns its id, or no row when the batch holds its custom id already.</summary>
    private static readonly string InsertItem = $"""
        INSERT INTO items (batch_id, line, custom_id, model, state, priority) VALUES (?1, ?2, ?3, ?4, {(int)ItemState.Staged}, ?5)
        ON CONFLICT (batch_id, custom_id) DO NOTHING
        RETURNING id
        """;

    /// <inheritdoc />
    public Task<IReadOnlyList<DuplicateCustomId>> AddItemsAsync(string batchId, IReadOnlyList<ImportItem> items, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(items);
        return WriteAsync<IReadOnlyList<DuplicateCustomId>>(writer =>
        {
            using var tx = writer.BeginTransaction();
            var priority = Convert.ToInt64(Scalar(writer, PriorityOfValidating, tx, ("$batch", batchId))
                ?? throw new StoreException($"Batch {batchId} is not being validated."));
            var insert = Prepared(writer, InsertItem);
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

    private static readonly string UncountOpenJobsLeases = $"""
        UPDATE items SET attempts = attempts - 1
        WHERE state = {(int)ItemState.Leased}
            AND id IN (SELECT t.item_id FROM native_job_items t JOIN native_jobs j ON j.id = t.job_id WHERE j.status = {(int)NativeJobStatus.Submitted})
        """;

    private static readonly string ReleaseAll = $"UPDATE items SET state = {(int)ItemState.Queued}, lease_until = NULL WHERE state = {(int)ItemState.Leased}";

    private static readonly string StoppingBatches = $"""
        SELECT id FROM batches
        WHERE mode <> {(int)BatchMode.Native} AND (status = {StoredStatus.Cancelling} OR (status = {StoredStatus.InProgress} AND expired_at IS NOT NULL))
        """;

    private static readonly string EndStoppedItems = $"UPDATE items SET state = $state WHERE batch_id = $id AND state IN ({(int)ItemState.Queued}, {(int)ItemState.Staged})";

    /// <inheritdoc />
    public Task<int> ReleaseLeasesAsync(CancellationToken cancellationToken) =>
        WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            // An item of a job still open at its provider was not sent again by the stop: the runner
            // leases it back to that job, and that lease must not count as another attempt.
            Execute(writer, UncountOpenJobsLeases, tx);
            var released = Execute(writer, ReleaseAll, tx);

            // A realtime batch that was cancelling, or past its window, sends nothing more: what was in
            // flight at the stop ends now, as the rest did, so the batch can end.
            var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
            var stopping = new List<string>();
            using (var select = Prepare(writer, tx, StoppingBatches))
            using (var reader = select.ExecuteReader())
            {
                while (reader.Read())
                {
                    stopping.Add(reader.GetString(0));
                }
            }

            foreach (var batchId in stopping)
            {
                var cancelling = IsCancelling(writer, tx, batchId);
                var ended = Execute(writer, EndStoppedItems, tx,
                    ("$id", batchId), ("$state", (int)(cancelling ? ItemState.Cancelled : ItemState.Expired)));
                Execute(writer, cancelling ? "UPDATE batches SET cancelled = cancelled + @n WHERE id = @id" : StoreSql.AddExpired, tx, ("@id", batchId), ("@n", ended));
                Execute(writer, FinishBatch, tx, ("$id", batchId), ("$now", now));
            }

            tx.Commit();
            return released;
        }, cancellationToken);

    /// <summary>
    /// The next queued items of a model that are due, by the claim index (whose predicate, the
    /// queued state, is written in as the same number, so SQLite can use it).
    /// </summary>
    private static readonly string ClaimableItems = $"""
        SELECT i.id, i.line, i.custom_id, i.model, i.attempts, b.body, i.batch_id, i.priority, t.endpoint, i.lease, i.tier, i.reasks
        FROM items i INDEXED BY ix_items_queued JOIN item_bodies b ON b.item_id = i.id JOIN batches t ON t.id = i.batch_id
        WHERE i.model = $model AND i.state = {(int)ItemState.Queued} AND i.next_attempt_at <= $now AND ($batch IS NULL OR i.batch_id = $batch)
            AND (i.tier = {(int)ItemTier.Native}) = $native
        ORDER BY i.priority DESC, i.next_attempt_at, i.id
        LIMIT $max
        """;

    private static readonly string LeaseItems = $"""
        UPDATE items SET state = {(int)ItemState.Leased}, attempts = attempts + 1, lease = lease + 1, lease_until = $until
        WHERE id IN (SELECT value FROM json_each($ids))
        """;

    private static readonly string NextDue = $"""
        SELECT MIN(i.next_attempt_at) FROM items i JOIN batches t ON t.id = i.batch_id
        WHERE i.model = $model AND i.state = {(int)ItemState.Queued} AND ($batch IS NULL OR i.batch_id = $batch) AND i.tier <> {(int)ItemTier.Native}
        """;

    /// <inheritdoc />
    Task<IReadOnlyList<ClaimedItem>> IBatchStore.ClaimAsync(string model, string? batchId, bool native, int max, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        return WriteAsync<IReadOnlyList<ClaimedItem>>(writer =>
        {
            using var tx = writer.BeginTransaction();
            using var select = Prepare(writer, tx, ClaimableItems, ("$model", SqliteType.Text), ("$batch", SqliteType.Text), ("$now", SqliteType.Integer), ("$max", SqliteType.Integer), ("$native", SqliteType.Integer));
            select.Parameters["$model"].Value = model;
            select.Parameters["$batch"].Value = (object?)batchId ?? DBNull.Value;
            select.Parameters["$now"].Value = now.ToUnixTimeMilliseconds();
            select.Parameters["$max"].Value = max;
            select.Parameters["$native"].Value = native ? 1 : 0;
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
                        Tier = (ItemTier)reader.GetInt32(10),
                        Reasks = reader.GetInt32(11),
                    });
                }
            }

            // One statement leases the whole chunk: the same +1 the rows above were read with.
            if (claimed.Count > 0)
            {
                Execute(writer, LeaseItems, tx, ("$until", leaseUntil.ToUnixTimeMilliseconds()), ("$ids", "[" + string.Join(',', claimed.Select(item => item.ItemId)) + "]"));
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
        var due = Scalar(connection, NextDue, null, ("$model", model), ("$batch", batchId));
        return due is long ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null;
    }

    // The statements a commit runs for each item, by position: ?1 item id, ?2 the lease the
    // outcome was decided under, then as named. Each changes the item only while that lease holds.
    private static readonly string EndItem =
        $"UPDATE items SET state = ?3, lease_until = NULL, last_error = ?4 WHERE id = ?1 AND state = {(int)ItemState.Leased} AND lease = ?2";

    private static readonly string RetryItem =
        $"UPDATE items SET state = {(int)ItemState.Queued}, lease_until = NULL, next_attempt_at = ?3, last_error = ?4, reasks = reasks + ?5 WHERE id = ?1 AND state = {(int)ItemState.Leased} AND lease = ?2";

    private static readonly string ReleaseItem =
        $"UPDATE items SET state = {(int)ItemState.Queued}, lease_until = NULL, attempts = attempts - 1 WHERE id = ?1 AND state = {(int)ItemState.Leased} AND lease = ?2";

    private static readonly string EndUnsentItem =
        $"UPDATE items SET state = ?3, lease_until = NULL, attempts = attempts - 1 WHERE id = ?1 AND state = {(int)ItemState.Leased} AND lease = ?2";

    private const string InsertResult = """
        INSERT INTO results (item_id, status_code, request_id, body, error_code, error_message, input_tokens, output_tokens, cached_tokens, cost_nanos, latency_ms, finished_at, cached)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
        """;

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
            var end = Prepared(writer, EndItem);
            var retry = Prepared(writer, RetryItem);
            var release = Prepared(writer, ReleaseItem);
            var unsent = Prepared(writer, EndUnsentItem);
            var result = Prepared(writer, InsertResult);
            var plan = CommitPlan.Of(outcomes, batchId => IsCancelling(writer, tx, batchId));
            foreach (var outcome in plan.Released.Outcomes)
            {
                release.Bind(1, outcome.Item.ItemId).Bind(2, outcome.Item.Lease).Execute();
            }

            foreach (var outcome in plan.Unsent.Outcomes)
            {
                if (unsent.Bind(1, outcome.Item.ItemId).Bind(2, outcome.Item.Lease).Bind(3, (int)CommitPlan.EndState(outcome.Kind)).Execute() == 1)
                {
                    plan.Count(outcome);
                }
            }

            foreach (var outcome in plan.Retried.Outcomes)
            {
                if (retry.Bind(1, outcome.Item.ItemId).Bind(2, outcome.Item.Lease).Bind(3, outcome.NextAttemptAt.ToUnixTimeMilliseconds()).Bind(4, CommitPlan.ErrorOf(outcome))
                    .Bind(5, CommitPlan.Reasked(outcome)).Execute() == 1)
                {
                    plan.Count(outcome);
                }
            }

            var finishedAt = now.ToUnixTimeMilliseconds();
            foreach (var outcome in plan.Ended.Outcomes)
            {
                var item = outcome.Item;
                if (end.Bind(1, item.ItemId).Bind(2, item.Lease).Bind(3, (int)CommitPlan.EndState(outcome.Kind)).Bind(4, CommitPlan.ErrorOf(outcome)).Execute() != 1)
                {
                    // The lease was lost (released and claimed again); the other holder records the answer.
                    continue;
                }

                var attempt = outcome.Result;
                result.Bind(1, item.ItemId).Bind(2, attempt.StatusCode).Bind(3, attempt.RequestId).Bind(4, attempt.Body)
                    .Bind(5, attempt.ErrorCode).Bind(6, attempt.ErrorMessage).Bind(7, attempt.InputTokens).Bind(8, attempt.OutputTokens)
                    .Bind(9, attempt.CachedTokens).Bind(10, CommitPlan.StoredCost(attempt)).Bind(11, attempt.LatencyMs).Bind(12, finishedAt).Bind(13, attempt.Cached ? 1 : 0)
                    .Execute();
                plan.Count(outcome);
            }

            var completed = new List<string>();
            foreach (var (batchId, delta) in plan.Counts)
            {
                Execute(writer, StoreSql.AddCounts, tx, delta.Parameters(batchId, "@"));
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

    private static readonly string StatusIsCancelling = $"SELECT status = {StoredStatus.Cancelling} FROM batches WHERE id = $id";

    /// <summary>Whether <paramref name="batchId"/> is being cancelled, read in the writer's transaction.</summary>
    private static bool IsCancelling(SqliteConnection writer, SqliteTransaction tx, string batchId) =>
        Scalar(writer, StatusIsCancelling, tx, ("$id", batchId)) is 1L;

    /// <inheritdoc />
    public Task<int> MoveTierAsync(string batchId, string? model, IReadOnlyCollection<ItemTier> fromTiers, ItemTier toTier, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(fromTiers);
        return WriteAsync(writer => Execute(writer, StoreSql.MoveTier, null, StoreSql.MoveTierParameters(batchId, model, fromTiers, toTier, "@")), cancellationToken);
    }

    /// <inheritdoc />
    public Task MoveItemsAsync(IReadOnlyCollection<long> itemIds, ItemTier toTier, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(itemIds);
        return itemIds.Count == 0
            ? Task.CompletedTask
            : WriteAsync(writer => Execute(writer, "UPDATE items SET tier = $to WHERE id IN (SELECT value FROM json_each($ids))", null,
                ("$to", (int)toTier), ("$ids", "[" + string.Join(',', itemIds) + "]")), cancellationToken);
    }

    /// <inheritdoc />
    public Task<CarriedOver> CarryOverAsync(string fromBatchId, string toBatchId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fromBatchId);
        ArgumentNullException.ThrowIfNull(toBatchId);
        return WriteAsync(writer =>
        {
            // Read before the transaction, on the one writer: nothing else writes between.
            (string, object?)[] batches = [("@from", fromBatchId), ("@to", toBatchId)];
            var (count, input, output, saved) = Query(writer, r => (r.GetInt64(0), r.GetInt64(1), r.GetInt64(2), r.GetInt64(3)), StoreSql.SumUnchanged, batches)[0];
            using var tx = writer.BeginTransaction();

            Execute(writer, StoreSql.CopyUnchanged, tx, [.. batches, ("@now", now.ToUnixTimeMilliseconds())]);
            Execute(writer, StoreSql.EndUnchanged, tx, batches);
            Execute(writer, StoreSql.CountUnchanged, tx, [.. batches, ("@n", count), ("@in", input), ("@out", output), ("@saved", saved)]);
            Execute(writer, FinishBatch, tx, ("$id", toBatchId), ("$now", now.ToUnixTimeMilliseconds()));
            var dropped = Convert.ToInt64(Scalar(writer, StoreSql.CountDropped, tx, batches), System.Globalization.CultureInfo.InvariantCulture);
            tx.Commit();
            return new CarriedOver(count, dropped);
        }, cancellationToken);
    }

    /// <inheritdoc />
    public Task CutOverAsync(string batchId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            Execute(writer, StoreSql.CutOver, tx, ("@id", batchId), ("@now", now.ToUnixTimeMilliseconds()));
            var moved = Execute(writer, StoreSql.MoveTier, tx, StoreSql.MoveTierParameters(batchId, null, StoreSql.PlannedTiers, ItemTier.Realtime, "@"));
            tx.Commit();
            return moved;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<OpenItems>> ListOpenItemsAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        await using var connection = Open();
        return Query(connection, r => new OpenItems(r.GetString(0), (ItemTier)r.GetInt32(1), r.GetInt64(2)), StoreSql.OpenByTier, ("@id", batchId));
    }
}
