using Npgsql;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

public sealed partial class PostgresBatchStore
{
    private static readonly string PriorityOfValidating = $"SELECT priority FROM batches WHERE id = @batch AND status = {StoredStatus.Validating} FOR SHARE";

    /// <summary>Stages a chunk of imported items with their bodies; returns the lines that went in (a custom id the batch holds already is left out).</summary>
    private static readonly string InsertItems = $"""
        WITH input AS (
            SELECT * FROM unnest(@lines::bigint[], @custom_ids::text[], @models::text[], @bodies::bytea[]) AS t(line, custom_id, model, body)),
        inserted AS (
            INSERT INTO items (batch_id, line, custom_id, model, state, priority)
            SELECT @batch, line, custom_id, model, {(int)ItemState.Staged}, @priority FROM input ORDER BY line
            ON CONFLICT (batch_id, custom_id) DO NOTHING
            RETURNING id, line),
        bodies AS (
            INSERT INTO item_bodies (item_id, body) SELECT inserted.id, input.body FROM inserted JOIN input ON input.line = inserted.line)
        SELECT line FROM inserted
        """;

    /// <inheritdoc />
    public Task<IReadOnlyList<DuplicateCustomId>> AddItemsAsync(string batchId, IReadOnlyList<ImportItem> items, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(items);
        return InTransactionAsync<IReadOnlyList<DuplicateCustomId>>(async (connection, tx) =>
        {
            var priority = await ScalarAsync(connection, tx, PriorityOfValidating, cancellationToken, ("batch", batchId))
                ?? throw new StoreException($"Batch {batchId} is not being validated.");
            await ExecuteAsync(connection, tx, "INSERT INTO batch_models (batch_id, model) SELECT @batch, unnest(@models) ON CONFLICT DO NOTHING", cancellationToken,
                ("batch", batchId), ("models", items.Select(i => i.Model).Distinct(StringComparer.Ordinal).ToArray()));

            // One statement for the chunk: rows whose custom id the batch holds already are left out,
            // and the lines that went in come back.
            var added = await QueryAsync(connection, tx, InsertItems, r => r.GetInt64(0), cancellationToken,
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

    /// <summary>Ends the items not yet sent of the realtime batches that are cancelling or past their window; returns each with its batch and end.</summary>
    private static readonly string EndStoppedItems = $"""
        UPDATE items i SET state = CASE WHEN b.status = {StoredStatus.Cancelling} THEN {(int)ItemState.Cancelled} ELSE {(int)ItemState.Expired} END
        FROM batches b
        WHERE i.batch_id = b.id AND i.state IN ({(int)ItemState.Queued}, {(int)ItemState.Staged}) AND b.mode <> {(int)BatchMode.Native}
            AND (b.status = {StoredStatus.Cancelling} OR (b.status = {StoredStatus.InProgress} AND b.expired_at IS NOT NULL))
        RETURNING i.batch_id, i.state
        """;

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
            UPDATE items SET state = {(int)ItemState.Queued}, lease_until = NULL, leased_by = NULL,
                attempts = attempts - CASE WHEN EXISTS (
                    SELECT 1 FROM native_job_items t JOIN native_jobs j ON j.id = t.job_id WHERE t.item_id = items.id AND j.status = {(int)NativeJobStatus.Submitted}) THEN 1 ELSE 0 END
            WHERE state = {(int)ItemState.Leased} AND ({whose})
            """, cancellationToken, parameters);
        if (released == 0)
        {
            return 0;
        }

        var stopped = await QueryAsync(connection, tx, EndStoppedItems, r => (Batch: r.GetString(0), State: (ItemState)r.GetInt32(1)), cancellationToken);
        var deltas = new SortedDictionary<string, BatchDelta>(StringComparer.Ordinal);
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

    /// <summary>
    /// Leases the next queued items of a model that are due. Rows another node is claiming are
    /// skipped, not waited for; a row that another claim took meanwhile is no longer queued when
    /// its lock is won, so none is leased twice.
    /// </summary>
    private static readonly string ClaimItems = $"""
        WITH picked AS (
            SELECT i.id FROM items i JOIN batches t ON t.id = i.batch_id
            WHERE i.model = @model AND i.state = {(int)ItemState.Queued} AND i.next_attempt_at <= @now
                AND (@batch::text IS NULL OR i.batch_id = @batch) AND (i.tier = {(int)ItemTier.Native}) = @native
            ORDER BY i.priority DESC, i.next_attempt_at, i.id
            LIMIT @max
            FOR UPDATE OF i SKIP LOCKED)
        UPDATE items i SET state = {(int)ItemState.Leased}, attempts = i.attempts + 1, lease = i.lease + 1, lease_until = @lease, leased_by = @node
        FROM picked, item_bodies b, batches t
        WHERE i.id = picked.id AND b.item_id = i.id AND t.id = i.batch_id
        RETURNING i.id, i.batch_id, i.line, i.custom_id, i.model, b.body, i.attempts, i.priority, t.endpoint, i.next_attempt_at, i.lease, i.tier, i.reasks
        """;

    private static readonly string NextDue = $"""
        SELECT MIN(i.next_attempt_at) FROM items i JOIN batches t ON t.id = i.batch_id
        WHERE i.model = @model AND i.state = {(int)ItemState.Queued}
            AND (@batch::text IS NULL OR i.batch_id = @batch) AND i.tier <> {(int)ItemTier.Native}
        """;

    /// <inheritdoc />
    Task<IReadOnlyList<ClaimedItem>> IBatchStore.ClaimAsync(string model, string? batchId, bool native, int max, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        return WithConnectionAsync<IReadOnlyList<ClaimedItem>>(async connection =>
        {
            var claimed = await QueryAsync(connection, null, ClaimItems, r => (Item: new ClaimedItem(r.GetInt64(0), r.GetString(1), r.GetInt64(2), r.GetString(3), r.GetString(4), (byte[])r.GetValue(5), r.GetInt32(6), (BatchPriority)r.GetInt32(7), r.GetString(8)) { Lease = r.GetInt64(10), Tier = (ItemTier)r.GetInt32(11), Reasks = r.GetInt32(12) }, Due: r.GetInt64(9)),
                cancellationToken, ("model", model), ("batch", batchId), ("now", now.ToUnixTimeMilliseconds()), ("max", max), ("lease", leaseUntil.ToUnixTimeMilliseconds()), ("node", NodeName), ("native", native));
            return [.. claimed.OrderByDescending(c => c.Item.Priority).ThenBy(c => c.Due).ThenBy(c => c.Item.ItemId).Select(c => c.Item)];
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<DateTimeOffset?> NextDueAsync(string model, string? batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(model);
        var due = await ScalarAsync(NextDue, cancellationToken, ("model", model), ("batch", batchId));
        return due is long ms ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null;
    }

    private static readonly string CancellingOfBatches = $"SELECT id FROM batches WHERE id = ANY(@ids) AND status = {StoredStatus.Cancelling} ORDER BY id FOR UPDATE";

    // The statements a commit runs for each set of its plan, over arrays of the items' ids and
    // the leases their outcomes were decided under. Each changes an item only while that lease holds.
    private static readonly string ReleaseItems = $"""
        UPDATE items i SET state = {(int)ItemState.Queued}, lease_until = NULL, leased_by = NULL, attempts = i.attempts - 1
        FROM unnest(@ids::bigint[], @leases::bigint[]) AS u(id, lease)
        WHERE i.id = u.id AND i.state = {(int)ItemState.Leased} AND i.lease = u.lease
        """;

    private static readonly string EndUnsentItems = $"""
        UPDATE items i SET state = u.state, lease_until = NULL, leased_by = NULL, attempts = i.attempts - 1
        FROM unnest(@ids::bigint[], @leases::bigint[], @states::integer[]) AS u(id, lease, state)
        WHERE i.id = u.id AND i.state = {(int)ItemState.Leased} AND i.lease = u.lease
        RETURNING i.id
        """;

    private static readonly string RetryItems = $"""
        UPDATE items i SET state = {(int)ItemState.Queued}, lease_until = NULL, leased_by = NULL, next_attempt_at = u.next, last_error = u.error, reasks = i.reasks + u.reask
        FROM unnest(@ids::bigint[], @leases::bigint[], @next::bigint[], @errors::text[], @reasks::integer[]) AS u(id, lease, next, error, reask)
        WHERE i.id = u.id AND i.state = {(int)ItemState.Leased} AND i.lease = u.lease
        RETURNING i.id
        """;

    private static readonly string EndItems = $"""
        UPDATE items i SET state = u.state, lease_until = NULL, leased_by = NULL, last_error = u.error
        FROM unnest(@ids::bigint[], @leases::bigint[], @states::integer[], @errors::text[]) AS u(id, lease, state, error)
        WHERE i.id = u.id AND i.state = {(int)ItemState.Leased} AND i.lease = u.lease
        RETURNING i.id
        """;

    private const string InsertResults = """
        INSERT INTO results (item_id, status_code, request_id, body, error_code, error_message, input_tokens, output_tokens, cached_tokens, cost_nanos, latency_ms, cached, finished_at)
        SELECT u.*, @now FROM unnest(@ids::bigint[], @status::integer[], @request_ids::text[], @bodies::bytea[], @codes::text[], @messages::text[],
            @input::integer[], @output::integer[], @cached::integer[], @cost::bigint[], @latency::integer[], @kept::integer[]) AS u
        """;

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
            var cancelling = (await QueryAsync(connection, tx, CancellingOfBatches, r => r.GetString(0), cancellationToken, ("ids", batchIds))).ToHashSet(StringComparer.Ordinal);
            var plan = CommitPlan.Of(outcomes, cancelling.Contains);

            if (plan.Released.Outcomes.Count > 0)
            {
                await ExecuteAsync(connection, tx, ReleaseItems, cancellationToken, ("ids", plan.Released.Ids()), ("leases", plan.Released.Leases()));
            }

            foreach (var id in await QueryAsync(connection, tx, EndUnsentItems, r => r.GetInt64(0), cancellationToken, ("ids", plan.Unsent.Ids()), ("leases", plan.Unsent.Leases()), ("states", plan.Unsent.States())))
            {
                plan.Count(plan.Unsent.ById[id]);
            }

            if (plan.Retried.Outcomes.Count > 0)
            {
                foreach (var id in await QueryAsync(connection, tx, RetryItems, r => r.GetInt64(0), cancellationToken, ("ids", plan.Retried.Ids()), ("leases", plan.Retried.Leases()),
                    ("next", plan.Retried.Outcomes.Select(o => o.NextAttemptAt.ToUnixTimeMilliseconds()).ToArray()), ("errors", plan.Retried.Errors()),
                    ("reasks", plan.Retried.Outcomes.Select(CommitPlan.Reasked).ToArray())))
                {
                    plan.Count(plan.Retried.ById[id]);
                }
            }

            // Only answers whose lease is still held are recorded: a lease that was lost (released
            // and claimed again) belongs to the other holder, which records its own answer.
            var held = (await QueryAsync(connection, tx, EndItems, r => r.GetInt64(0), cancellationToken, ("ids", plan.Ended.Ids()), ("leases", plan.Ended.Leases()), ("states", plan.Ended.States()), ("errors", plan.Ended.Errors())))
                .Select(id => plan.Ended.ById[id]).ToList();
            if (held.Count > 0)
            {
                var results = held.Select(o => o.Result).ToList();
                await ExecuteAsync(connection, tx, InsertResults, cancellationToken, ("now", now.ToUnixTimeMilliseconds()), ("ids", held.Select(o => o.Item.ItemId).ToArray()),
                    ("status", results.Select(r => r.StatusCode).ToArray()), ("request_ids", results.Select(r => r.RequestId).ToArray()),
                    ("bodies", results.Select(r => r.Body).ToArray()), ("codes", results.Select(r => r.ErrorCode).ToArray()),
                    ("messages", results.Select(r => r.ErrorMessage).ToArray()), ("input", results.Select(r => r.InputTokens).ToArray()),
                    ("output", results.Select(r => r.OutputTokens).ToArray()), ("cached", results.Select(r => r.CachedTokens).ToArray()),
                    ("cost", results.Select(CommitPlan.StoredCost).ToArray()), ("latency", results.Select(r => r.LatencyMs).ToArray()),
                    ("kept", results.Select(r => r.Cached ? 1 : 0).ToArray()));
                foreach (var outcome in held)
                {
                    plan.Count(outcome);
                }
            }

            var completed = await ApplyDeltasAsync(connection, tx, plan.Counts, now.ToUnixTimeMilliseconds(), cancellationToken);
            if (completed.Count > 0)
            {
                await NotifyAsync(connection, tx, cancellationToken);
            }

            return completed.Count == 0 ? CommitSummary.None : new CommitSummary(completed);
        }, cancellationToken);
    }

    /// <summary>Adds what ended to each batch's counts, batch by batch in the order given, and ends the batches whose last item ended; returns those.</summary>
    private static async Task<List<string>> ApplyDeltasAsync(NpgsqlConnection connection, NpgsqlTransaction tx, IEnumerable<KeyValuePair<string, BatchDelta>> deltas, long now, CancellationToken cancellationToken)
    {
        var completed = new List<string>();
        foreach (var (batchId, delta) in deltas)
        {
            await ExecuteAsync(connection, tx, StoreSql.AddCounts, cancellationToken, delta.Parameters(batchId, ""));
            if (await FinishBatchAsync(connection, tx, batchId, now, cancellationToken))
            {
                completed.Add(batchId);
            }
        }

        return completed;
    }

    /// <inheritdoc />
    public Task<int> MoveTierAsync(string batchId, string? model, IReadOnlyCollection<ItemTier> fromTiers, ItemTier toTier, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(fromTiers);
        return WithConnectionAsync(connection => ExecuteAsync(connection, null, StoreSql.MoveTier, cancellationToken, StoreSql.MoveTierParameters(batchId, model, fromTiers, toTier, "")), cancellationToken);
    }

    /// <inheritdoc />
    public Task MoveItemsAsync(IReadOnlyCollection<long> itemIds, ItemTier toTier, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(itemIds);
        return itemIds.Count == 0
            ? Task.CompletedTask
            : WithConnectionAsync(connection => ExecuteAsync(connection, null, "UPDATE items SET tier = @to WHERE id = ANY(@ids)", cancellationToken,
                ("to", (int)toTier), ("ids", itemIds.ToArray())), cancellationToken);
    }

    /// <inheritdoc />
    public Task<CarriedOver> CarryOverAsync(string fromBatchId, string toBatchId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fromBatchId);
        ArgumentNullException.ThrowIfNull(toBatchId);
        return InTransactionAsync(async (connection, tx) =>
        {
            (string, object?)[] batches = [("from", fromBatchId), ("to", toBatchId)];
            var (count, input, output, saved) = (await QueryAsync(connection, tx, StoreSql.SumUnchanged, r => (r.GetInt64(0), r.GetInt64(1), r.GetInt64(2), r.GetInt64(3)), cancellationToken, batches))[0];
            await ExecuteAsync(connection, tx, StoreSql.CopyUnchanged, cancellationToken, [.. batches, ("now", now.ToUnixTimeMilliseconds())]);
            await ExecuteAsync(connection, tx, StoreSql.EndUnchanged, cancellationToken, batches);
            await ExecuteAsync(connection, tx, StoreSql.CountUnchanged, cancellationToken, [.. batches, ("n", count), ("in", input), ("out", output), ("saved", saved)]);
            await FinishBatchAsync(connection, tx, toBatchId, now.ToUnixTimeMilliseconds(), cancellationToken);
            var dropped = Convert.ToInt64(await ScalarAsync(connection, tx, StoreSql.CountDropped, cancellationToken, batches), System.Globalization.CultureInfo.InvariantCulture);
            return new CarriedOver(count, dropped);
        }, cancellationToken);
    }

    /// <inheritdoc />
    public Task CutOverAsync(string batchId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return InTransactionAsync(async (connection, tx) =>
        {
            await ExecuteAsync(connection, tx, StoreSql.CutOver, cancellationToken, ("id", batchId), ("now", now.ToUnixTimeMilliseconds()));
            return await ExecuteAsync(connection, tx, StoreSql.MoveTier, cancellationToken, StoreSql.MoveTierParameters(batchId, null, StoreSql.PlannedTiers, ItemTier.Realtime, ""));
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<OpenItems>> ListOpenItemsAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return await QueryAsync(StoreSql.OpenByTier, r => new OpenItems(r.GetString(0), (ItemTier)r.GetInt32(1), r.GetInt64(2)), cancellationToken, ("id", batchId));
    }
}
