using Shepherd.Engine.Model;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Storage;

/// <summary>
/// The statements both stores run word for word, written once. SQLite reads <c>@name</c>
/// parameters as PostgreSQL does, so only the dialects' real differences stay in the stores:
/// PostgreSQL's casts, arrays, sequences and row locks, SQLite's rowids, prepared statements and
/// updates in steps. Item states and batch statuses are written in from <see cref="ItemState"/>
/// and <see cref="StoredStatus"/>, once, when the class is first used.
/// </summary>
internal static class StoreSql
{
    /// <summary>One batch by its id (<c>@id</c>).</summary>
    internal const string BatchById = $"SELECT {StoreRows.BatchColumns} FROM batches WHERE id = @id";

    /// <summary>The models a batch's items name (<c>@batch</c>), whatever its status.</summary>
    internal const string BatchModels = "SELECT model FROM batch_models WHERE batch_id = @batch ORDER BY model";

    /// <summary>Forgets the models of a batch (<c>@batch</c>) whose items are read again.</summary>
    internal const string ClearBatchModels = "DELETE FROM batch_models WHERE batch_id = @batch";

    /// <summary>
    /// Ends a batch (<c>@id</c>) whose result files are written (<c>@output</c>, <c>@errors</c>):
    /// it takes the end it was given when its last item ended, at <c>@now</c>.
    /// </summary>
    internal static readonly string FinishFinalizing = $"""
        UPDATE batches SET status = ending, output_file_id = @output, error_file_id = @errors,
            completed_at = CASE WHEN ending = {StoredStatus.Completed} THEN @now ELSE completed_at END,
            cancelled_at = CASE WHEN ending = {StoredStatus.Cancelled} THEN @now ELSE cancelled_at END
        WHERE id = @id AND status = {StoredStatus.Finalizing}
        """;

    /// <summary>Opens a batch (<c>@id</c>) whose input was read whole, with what it was read as; changes nothing unless it was being validated.</summary>
    internal static readonly string AcceptBatch = $"""
        UPDATE batches SET status = {StoredStatus.InProgress}, format = @format, endpoint = @endpoint, total = @total,
            source_sha256 = @sha, source_bytes = @bytes, in_progress_at = @now
        WHERE id = @id AND status = {StoredStatus.Validating}
        """;

    /// <summary>Fails a batch (<c>@id</c>) whose input was refused, keeping the reasons (<c>@errors</c>).</summary>
    internal static readonly string RejectBatch = $"UPDATE batches SET status = {StoredStatus.Failed}, failed_at = @now, errors = @errors WHERE id = @id";

    /// <summary>Removes a batch (<c>@batch</c>) with its native jobs and models; its items are removed before, in chunks.</summary>
    internal const string DeleteBatch = """
        DELETE FROM native_job_items WHERE job_id IN (SELECT id FROM native_jobs WHERE batch_id = @batch);
        DELETE FROM native_jobs WHERE batch_id = @batch;
        DELETE FROM batch_models WHERE batch_id = @batch;
        DELETE FROM batches WHERE id = @batch
        """;

    /// <summary>Marks a batch (<c>@id</c>) as being cancelled, unless it has ended already.</summary>
    internal static readonly string MarkCancelling =
        $"UPDATE batches SET status = {StoredStatus.Cancelling}, cancelling_at = @now WHERE id = @id AND status IN ({StoredStatus.Validating}, {StoredStatus.InProgress})";

    /// <summary>Marks a batch (<c>@id</c>) in progress as past its window, once.</summary>
    internal static readonly string MarkExpired = $"UPDATE batches SET expired_at = @now WHERE id = @id AND status = {StoredStatus.InProgress} AND expired_at IS NULL";

    /// <summary>Counts <c>@n</c> items of a batch (<c>@id</c>) as expired.</summary>
    internal const string AddExpired = "UPDATE batches SET expired = expired + @n WHERE id = @id";

    /// <summary>
    /// Gives a batch back what the results of its failed and expired items counted and opens it
    /// again (parameters <c>@id</c>, <c>@expires</c>). It changes nothing when the batch has no
    /// such item or was cancelled; the caller then leaves the items alone.
    /// </summary>
    internal static readonly string RequeueFailedBatch = $"""
        UPDATE batches SET
            failed = failed - (SELECT COUNT(*) FROM items WHERE batch_id = @id AND state = {(int)ItemState.Failed}),
            expired = expired - (SELECT COUNT(*) FROM items WHERE batch_id = @id AND state = {(int)ItemState.Expired}),
            budget_exceeded = budget_exceeded - (SELECT COUNT(*) FROM items i JOIN results r ON r.item_id = i.id WHERE i.batch_id = @id AND i.state = {(int)ItemState.Failed} AND r.error_code = '{FailureCodes.BudgetExceeded}'),
            invalid_output = invalid_output - (SELECT COUNT(*) FROM items i JOIN results r ON r.item_id = i.id WHERE i.batch_id = @id AND i.state = {(int)ItemState.Failed} AND r.error_code = '{FailureCodes.InvalidOutput}'),
            input_tokens = input_tokens - (SELECT COALESCE(SUM(r.input_tokens), 0) FROM items i JOIN results r ON r.item_id = i.id WHERE i.batch_id = @id AND i.state IN ({(int)ItemState.Failed}, {(int)ItemState.Expired})),
            output_tokens = output_tokens - (SELECT COALESCE(SUM(r.output_tokens), 0) FROM items i JOIN results r ON r.item_id = i.id WHERE i.batch_id = @id AND i.state IN ({(int)ItemState.Failed}, {(int)ItemState.Expired})),
            cost_nanos = cost_nanos - (SELECT COALESCE(SUM(r.cost_nanos), 0) FROM items i JOIN results r ON r.item_id = i.id WHERE i.batch_id = @id AND i.state IN ({(int)ItemState.Failed}, {(int)ItemState.Expired})),
            status = {StoredStatus.InProgress}, ending = NULL, completed_at = NULL, expired_at = NULL, finalizing_at = NULL, expires_at = @expires
        WHERE id = @id AND status IN ({StoredStatus.InProgress}, {StoredStatus.Completed}, {StoredStatus.Expired})
            AND EXISTS (SELECT 1 FROM items WHERE batch_id = @id AND state IN ({(int)ItemState.Failed}, {(int)ItemState.Expired}))
        """;

    /// <summary>Removes the results of the failed and expired items of a batch (<c>@id</c>) that are queued again.</summary>
    internal static readonly string DeleteRequeuedResults = $"DELETE FROM results WHERE item_id IN (SELECT id FROM items WHERE batch_id = @id AND state IN ({(int)ItemState.Failed}, {(int)ItemState.Expired}))";

    /// <summary>Sets, or removes with null, a batch's budget (<c>@id</c>, <c>@budget</c>).</summary>
    internal const string SetBudget = "UPDATE batches SET budget_nanos = @budget WHERE id = @id";

    /// <summary>Sets how a batch (<c>@id</c>) uses the answer cache (<c>@use</c>).</summary>
    internal const string SetCacheUse = "UPDATE batches SET cache_use = @use WHERE id = @id";

    /// <summary>Sets what a batch (<c>@id</c>) asks of its answers: its schema (<c>@schema</c>) and re-asks (<c>@reasks</c>).</summary>
    internal const string SetOutputRules = "UPDATE batches SET output_schema = @schema, max_reasks = @reasks WHERE id = @id";

    /// <summary>The columns of tiers and the planner, the same in both dialects (a schema step of each store).</summary>
    internal const string TiersSchema = """
        ALTER TABLE items ADD COLUMN tier integer NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN cutover_at bigint;
        ALTER TABLE batches ADD COLUMN native_succeeded bigint NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN native_cost_nanos bigint NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN flex_succeeded bigint NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN flex_cost_nanos bigint NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN saved_nanos bigint NOT NULL DEFAULT 0;
        """;

    /// <summary>Answers not paid for again (kept from an earlier batch of the same input), the same in both dialects.</summary>
    internal const string ReusedSchema = """
        ALTER TABLE results ADD COLUMN cached integer NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN cached bigint NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN cache_saved_nanos bigint NOT NULL DEFAULT 0;
        """;

    /// <summary>How each batch uses the answer cache (<see cref="CacheUse"/>), the same in both dialects.</summary>
    internal const string CacheUseSchema = """
        ALTER TABLE batches ADD COLUMN cache_use integer NOT NULL DEFAULT 1;
        """;

    /// <summary>
    /// Answers checked against what their requests asked for: how often each item's answer was
    /// asked again, each batch's own schema and limit of re-asks, and how its checked answers came
    /// out, the same in both dialects.
    /// </summary>
    internal const string OutputSchema = """
        ALTER TABLE items ADD COLUMN reasks integer NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN output_schema text;
        ALTER TABLE batches ADD COLUMN max_reasks integer;
        ALTER TABLE batches ADD COLUMN valid_first bigint NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN valid_reasked bigint NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN invalid_output bigint NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN reasked bigint NOT NULL DEFAULT 0;
        ALTER TABLE batches ADD COLUMN reask_cost_nanos bigint NOT NULL DEFAULT 0;
        """;

    /// <summary>What each tenant's realtime calls cost, by day (UTC, <c>yyyy-MM-dd</c>): the ledger daily budgets are held against.</summary>
    internal const string SpendSchema = """
        CREATE TABLE tenant_spend (
            owner text NOT NULL,
            day text NOT NULL,
            calls bigint NOT NULL,
            cost_nanos bigint NOT NULL,
            PRIMARY KEY (owner, day)
        );
        """;

    /// <summary>Adds <c>@calls</c> and <c>@cost</c> to the ledger of <c>@owner</c> on <c>@day</c>.</summary>
    internal const string AddSpend = """
        INSERT INTO tenant_spend (owner, day, calls, cost_nanos) VALUES (@owner, @day, @calls, @cost)
        ON CONFLICT (owner, day) DO UPDATE SET calls = tenant_spend.calls + excluded.calls, cost_nanos = tenant_spend.cost_nanos + excluded.cost_nanos
        """;

    /// <summary>Every tenant's ledger on <c>@day</c>.</summary>
    internal const string SpendOn = "SELECT owner, day, calls, cost_nanos FROM tenant_spend WHERE day = @day";

    /// <summary>
    /// The queued items of a batch (<c>@to</c>) whose custom id and body are those of an item that
    /// succeeded in an earlier batch (<c>@from</c>), each with the earlier answer.
    /// </summary>
    private static readonly string Unchanged = $"""
        FROM items n
        JOIN items o ON o.batch_id = @from AND o.custom_id = n.custom_id AND o.state = {(int)ItemState.Succeeded}
        JOIN item_bodies nb ON nb.item_id = n.id
        JOIN item_bodies ob ON ob.item_id = o.id
        JOIN results r ON r.item_id = o.id
        WHERE n.batch_id = @to AND n.state = {(int)ItemState.Queued} AND nb.body = ob.body
        """;

    /// <summary>How many items <see cref="Unchanged"/> finds, their tokens, and what their answers cost when they were bought.</summary>
    internal static readonly string SumUnchanged =
        $"SELECT COUNT(*), COALESCE(SUM(r.input_tokens), 0), COALESCE(SUM(r.output_tokens), 0), COALESCE(SUM(r.cost_nanos), 0) {Unchanged}";

    /// <summary>
    /// Gives each item <see cref="Unchanged"/> finds its earlier answer, marked as kept (<c>@now</c>).
    /// The row keeps what the answer cost when it was bought, which a kept answer reads as what it
    /// saved (it costs nothing this time), so an answer kept run after run still says what it saves.
    /// </summary>
    internal static readonly string CopyUnchanged = $"""
        INSERT INTO results (item_id, status_code, request_id, body, error_code, error_message, input_tokens, output_tokens, cached_tokens, cost_nanos, latency_ms, finished_at, cached)
        SELECT n.id, r.status_code, r.request_id, r.body, NULL, NULL, r.input_tokens, r.output_tokens, r.cached_tokens, r.cost_nanos, r.latency_ms, @now, 1
        {Unchanged}
        """;

    /// <summary>Ends the queued items of a batch (<c>@to</c>) that were given an earlier answer.</summary>
    internal static readonly string EndUnchanged = $"""
        UPDATE items SET state = {(int)ItemState.Succeeded}
        WHERE batch_id = @to AND state = {(int)ItemState.Queued} AND EXISTS (SELECT 1 FROM results r WHERE r.item_id = items.id)
        """;

    /// <summary>Counts the kept answers (<c>@n</c>, tokens <c>@in</c>, <c>@out</c>, what they saved <c>@saved</c>) in a batch (<c>@to</c>).</summary>
    internal const string CountUnchanged = """
        UPDATE batches SET succeeded = succeeded + @n, input_tokens = input_tokens + @in, output_tokens = output_tokens + @out,
            cached = cached + @n, cache_saved_nanos = cache_saved_nanos + @saved
        WHERE id = @to
        """;

    /// <summary>Items of an earlier batch (<c>@from</c>) whose custom id the new one (<c>@to</c>) no longer has.</summary>
    internal const string CountDropped = """
        SELECT COUNT(*) FROM items o WHERE o.batch_id = @from AND NOT EXISTS (SELECT 1 FROM items n WHERE n.batch_id = @to AND n.custom_id = o.custom_id)
        """;

    /// <summary>Adds what a commit's outcomes counted (a <see cref="BatchDelta"/>, its <see cref="BatchDelta.Parameters"/>) to a batch's counts (<c>@id</c>).</summary>
    internal const string AddCounts = """
        UPDATE batches SET succeeded = succeeded + @s, failed = failed + @f, cancelled = cancelled + @c, expired = expired + @e,
            input_tokens = input_tokens + @in, output_tokens = output_tokens + @out, cost_nanos = cost_nanos + @cost, unpriced = unpriced + @unpriced,
            budget_exceeded = budget_exceeded + @over, native_succeeded = native_succeeded + @ns, native_cost_nanos = native_cost_nanos + @nc,
            flex_succeeded = flex_succeeded + @fs, flex_cost_nanos = flex_cost_nanos + @fc, saved_nanos = saved_nanos + @saved,
            cached = cached + @cached, cache_saved_nanos = cache_saved_nanos + @csaved,
            valid_first = valid_first + @vfirst, valid_reasked = valid_reasked + @vreasked, invalid_output = invalid_output + @invalid,
            reasked = reasked + @reasked, reask_cost_nanos = reask_cost_nanos + @rcost
        WHERE id = @id
        """;

    /// <summary>The tier a batch's mode (of the row named <c>mode</c>) starts its items in: the planner of an <c>auto</c> batch starts them native and moves those no batch API serves.</summary>
    internal static readonly string TierOfMode =
        $"CASE mode WHEN {(int)BatchMode.Realtime} THEN {(int)ItemTier.Realtime} WHEN {(int)BatchMode.Flex} THEN {(int)ItemTier.Flex} ELSE {(int)ItemTier.Native} END";

    /// <summary>
    /// Moves the queued items of a batch (<c>@id</c>), of one model (<c>@model</c>, or all when
    /// empty), from the tiers in <c>@from</c> (a bit per tier) to <c>@to</c>.
    /// </summary>
    internal static readonly string MoveTier = $"""
        UPDATE items SET tier = @to
        WHERE batch_id = @id AND state = {(int)ItemState.Queued} AND (@model = '' OR model = @model) AND ((1 << tier) & @from) <> 0
        """;

    /// <summary>What a batch's items are given when its input is accepted: queued, due from <c>now</c>, in the tier of the batch's mode.</summary>
    internal static string QueueStaged(string id, string now) =>
        $"state = {(int)ItemState.Queued}, next_attempt_at = {now}, tier = (SELECT {TierOfMode} FROM batches WHERE id = {id})";

    /// <summary>The tiers a planned batch moves to realtime when it cuts over.</summary>
    internal static readonly ItemTier[] PlannedTiers = [ItemTier.Native, ItemTier.Flex];

    /// <summary>The parameters of <see cref="MoveTier"/>, their names after <paramref name="prefix"/>.</summary>
    internal static (string Name, object? Value)[] MoveTierParameters(string batchId, string? model, IReadOnlyCollection<ItemTier> from, ItemTier to, string prefix) =>
    [
        (prefix + "id", batchId), (prefix + "model", model ?? ""), (prefix + "from", from.Aggregate(0, (bits, tier) => bits | (1 << (int)tier))), (prefix + "to", (int)to),
    ];

    /// <summary>Gives a batch (<c>@id</c>) its mode (<c>@mode</c>) and deadline (<c>@expires</c>), and forgets its cut-over.</summary>
    internal const string SetPlan = "UPDATE batches SET mode = @mode, expires_at = @expires, cutover_at = NULL WHERE id = @id";

    /// <summary>Moves a batch's (<c>@id</c>) queued items to the tier its mode starts them in.</summary>
    internal static readonly string QueuedToModeTier =
        $"UPDATE items SET tier = (SELECT {TierOfMode} FROM batches WHERE id = @id) WHERE batch_id = @id AND state = {(int)ItemState.Queued}";

    /// <summary>Marks a batch (<c>@id</c>) cut over to realtime at <c>@now</c>, once.</summary>
    internal const string CutOver = "UPDATE batches SET cutover_at = @now WHERE id = @id AND cutover_at IS NULL";

    /// <summary>A batch's (<c>@id</c>) items not yet ended, by model and tier.</summary>
    internal static readonly string OpenByTier = $"""
        SELECT model, tier, COUNT(*) FROM items
        WHERE batch_id = @id AND state IN ({(int)ItemState.Queued}, {(int)ItemState.Leased}, {(int)ItemState.Staged})
        GROUP BY model, tier ORDER BY model, tier
        """;

    /// <summary>
    /// A batch's items (<c>@batch</c>) are removed this many at a time, each chunk in a transaction
    /// of its own, so a large rejected batch never holds the store for long.
    /// </summary>
    private const string ChunkOfItems = "SELECT id FROM items WHERE batch_id = @batch ORDER BY id LIMIT 5000";

    /// <summary>Removes the bodies and results of the next chunk of a batch's items (<c>@batch</c>); <see cref="DeleteChunkOfItems"/> then the items.</summary>
    internal const string DeleteChunkOfAnswers = $"DELETE FROM results WHERE item_id IN ({ChunkOfItems}); DELETE FROM item_bodies WHERE item_id IN ({ChunkOfItems})";

    /// <summary>Removes the next chunk of a batch's items (<c>@batch</c>); none is left when it removes none.</summary>
    internal const string DeleteChunkOfItems = $"DELETE FROM items WHERE id IN ({ChunkOfItems})";

    /// <summary>A page of a batch's results (<c>@batch</c>) in line order, after line <c>@after</c>.</summary>
    internal const string ResultsPage = $"""
        {StoreRows.ResultColumns}
        WHERE i.batch_id = @batch AND i.line > @after
        ORDER BY i.line
        LIMIT @limit OFFSET @offset
        """;

    /// <summary>The result of one item of a batch (<c>@batch</c>), by its custom id (<c>@custom_id</c>).</summary>
    internal const string ResultByCustomId = $"{StoreRows.ResultColumns} WHERE i.batch_id = @batch AND i.custom_id = @custom_id";

    /// <summary>Records a stored file.</summary>
    internal const string InsertFile = $"INSERT INTO files ({StoreRows.FileColumns}) VALUES (@id, @owner, @filename, @purpose, @bytes, @created, @batch)";

    /// <summary>One file by its id (<c>@id</c>).</summary>
    internal const string FileById = $"SELECT {StoreRows.FileColumns} FROM files WHERE id = @id";

    /// <summary>Forgets a stored file (<c>@id</c>).</summary>
    internal const string DeleteFile = "DELETE FROM files WHERE id = @id";

    /// <summary>Records a job handed to a provider's batch API, open; returns its id.</summary>
    internal static readonly string InsertNativeJob = $"""
        INSERT INTO native_jobs (batch_id, upstream, provider_batch_id, status, created_at) VALUES (@batch, @upstream, @provider, {(int)NativeJobStatus.Submitted}, @now)
        RETURNING id
        """;

    /// <summary>The jobs whose results are still to be read, oldest first.</summary>
    internal static readonly string OpenNativeJobs = $"SELECT {StoreRows.NativeJobColumns} FROM native_jobs WHERE status = {(int)NativeJobStatus.Submitted} ORDER BY id";

    /// <summary>A batch's jobs (<c>@batch</c>), oldest first.</summary>
    internal const string NativeJobsOfBatch = $"SELECT {StoreRows.NativeJobColumns} FROM native_jobs WHERE batch_id = @batch ORDER BY id";

    /// <summary>The items handed to a job (<c>@job</c>).</summary>
    internal const string NativeJobItems = "SELECT item_id FROM native_job_items WHERE job_id = @job ORDER BY item_id";

    /// <summary>Where a job is (<c>@id</c>, <c>@status</c>), and whether a cancel was sent for it (<c>@cancel</c>).</summary>
    internal const string UpdateNativeJob = "UPDATE native_jobs SET status = @status, cancel_requested = @cancel WHERE id = @id";

    /// <summary>Answers, tokens and failures per bucket of <c>@width</c> milliseconds.</summary>
    internal static readonly string Timeline = $"""
        SELECT r.finished_at / @width, COUNT(*), SUM(r.input_tokens + r.output_tokens), SUM(CASE WHEN i.state = {(int)ItemState.Failed} THEN 1 ELSE 0 END)
        FROM results r JOIN items i ON i.id = r.item_id
        WHERE i.batch_id = @batch
        GROUP BY 1 ORDER BY 1
        """;

    /// <summary>Failed items by kind: Shepherd's code when it has one (no HTTP answer came, or the answer did not fit), else the HTTP status.</summary>
    internal static readonly string Errors = $"""
        SELECT CASE WHEN r.error_code IS NOT NULL THEN r.error_code WHEN r.status_code IS NOT NULL THEN 'HTTP ' || r.status_code ELSE 'unknown' END AS kind, COUNT(*)
        FROM results r JOIN items i ON i.id = r.item_id
        WHERE i.batch_id = @batch AND i.state = {(int)ItemState.Failed}
        GROUP BY 1 ORDER BY 2 DESC, 1
        """;

    /// <summary>The latency of every answer that came over HTTP, ascending.</summary>
    internal const string Latency = """
        SELECT r.latency_ms FROM results r JOIN items i ON i.id = r.item_id
        WHERE i.batch_id = @batch AND r.status_code IS NOT NULL
        ORDER BY 1
        """;

    /// <summary>A tenant's open batches and their requests not yet ended.</summary>
    internal static readonly string Usage = $"""
        SELECT COUNT(*), CAST(COALESCE(SUM(total - succeeded - failed - cancelled - expired), 0) AS BIGINT)
        FROM batches WHERE owner IS NOT DISTINCT FROM @owner
            AND status IN ({StoredStatus.Validating}, {StoredStatus.InProgress}, {StoredStatus.Finalizing}, {StoredStatus.Cancelling})
        """;
}
