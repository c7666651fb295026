using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

/// <summary>
/// The durable home of batches, items and results: the single source of truth. Every state
/// change is written here before it is acted on; the dispatcher holds only leases.
/// </summary>
public interface IBatchStore : IAsyncDisposable
{
    /// <summary>Creates the schema, or checks that an existing one is one this version knows.</summary>
    Task InitializeAsync(CancellationToken cancellationToken);

    /// <summary>Returns the batch, or null when there is none with that id.</summary>
    Task<BatchRecord?> GetBatchAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>Returns the newest batch read from <paramref name="source"/>, or null.</summary>
    Task<BatchRecord?> FindBatchBySourceAsync(string source, CancellationToken cancellationToken);

    /// <summary>The batches whose items may be dispatched, oldest first.</summary>
    Task<IReadOnlyList<BatchRecord>> ListActiveBatchesAsync(CancellationToken cancellationToken);

    /// <summary>
    /// The models named by the items of active batches (of <paramref name="batchId"/> only, when
    /// given; otherwise of <see cref="BatchMode.Realtime"/> batches only).
    /// </summary>
    Task<IReadOnlyList<string>> ListActiveModelsAsync(string? batchId, CancellationToken cancellationToken);

    /// <summary>The models named by the items of <paramref name="batchId"/>, whatever its status, in order.</summary>
    Task<IReadOnlyList<string>> ListModelsAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>
    /// Creates a batch in <see cref="BatchStatus.Validating"/>; its items are added with
    /// <see cref="AddItemsAsync"/>. Returns the new batch's id, or, when the owner already made a
    /// batch with the same idempotency key, that batch's id (and creates nothing); throws
    /// <see cref="IdempotencyKeyReusedException"/> when that batch was made of another body.
    /// </summary>
    Task<string> CreateBatchAsync(NewBatch batch, CancellationToken cancellationToken);

    /// <summary>Batches of <paramref name="owner"/> that came in by one of <paramref name="doors"/>, newest first.</summary>
    Task<Page<BatchRecord>> ListBatchesAsync(OwnerScope owner, IReadOnlyCollection<BatchDoor> doors, PageRequest page, CancellationToken cancellationToken);

    /// <summary>What <paramref name="owner"/> has open now: batches not yet ended and their requests not yet ended.</summary>
    Task<TenantUsage> GetUsageAsync(string? owner, CancellationToken cancellationToken);

    /// <summary>Batches whose last item ended and whose result files are still to be written.</summary>
    Task<IReadOnlyList<BatchRecord>> ListFinalizingBatchesAsync(CancellationToken cancellationToken);

    /// <summary>Batches whose input was still being read when the process stopped.</summary>
    Task<IReadOnlyList<BatchRecord>> ListValidatingBatchesAsync(CancellationToken cancellationToken);

    /// <summary>Removes every item of a batch that is still being validated, so its input can be read again.</summary>
    Task ClearItemsAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>Ends finalizing: the batch takes the status it ended with, and its result files.</summary>
    Task FinishFinalizingAsync(string batchId, string? outputFileId, string? errorFileId, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Stores a file from <paramref name="content"/>, streamed. Throws
    /// <see cref="FileTooLargeException"/> past <paramref name="maxBytes"/>, keeping nothing.
    /// </summary>
    Task<FileRecord> AddFileAsync(NewFile file, Stream content, long maxBytes, CancellationToken cancellationToken);

    /// <summary>Returns the file, or null.</summary>
    Task<FileRecord?> GetFileAsync(string fileId, CancellationToken cancellationToken);

    /// <summary>Files of <paramref name="owner"/>, newest first, of one purpose when given.</summary>
    Task<Page<FileRecord>> ListFilesAsync(OwnerScope owner, string? purpose, PageRequest page, CancellationToken cancellationToken);

    /// <summary>Opens a file's content for reading, streamed.</summary>
    Task<Stream> OpenFileAsync(string fileId, CancellationToken cancellationToken);

    /// <summary>Removes a file; returns false when there was none.</summary>
    Task<bool> DeleteFileAsync(string fileId, CancellationToken cancellationToken);

    /// <summary>
    /// Adds items to a validating batch in one transaction. Items whose custom id the batch
    /// already holds are not added; they are returned.
    /// </summary>
    Task<IReadOnlyList<DuplicateCustomId>> AddItemsAsync(string batchId, IReadOnlyList<ImportItem> items, CancellationToken cancellationToken);

    /// <summary>Accepts a validated batch: it becomes <see cref="BatchStatus.InProgress"/> and its items may be claimed.</summary>
    Task AcceptBatchAsync(string batchId, AcceptedInput input, CancellationToken cancellationToken);

    /// <summary>Rejects a validating batch: its items are removed and it ends <see cref="BatchStatus.Failed"/> with the errors.</summary>
    Task RejectBatchAsync(string batchId, IReadOnlyList<InputError> errors, CancellationToken cancellationToken);

    /// <summary>Removes a batch with its items and results.</summary>
    Task DeleteBatchAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>
    /// Queues every leased item again. A single-owner store calls this when it starts: the
    /// leases of a process that died are worthless. Returns how many were released.
    /// </summary>
    Task<int> ReleaseLeasesAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Leases up to <paramref name="max"/> queued items for <paramref name="model"/> that are
    /// due at <paramref name="now"/> (of <paramref name="batchId"/> only, when given): higher
    /// priority first, then oldest due first. The lease lasts until <paramref name="leaseUntil"/>
    /// and is committed before this returns. With <paramref name="native"/> the items of
    /// <see cref="ItemTier.Native"/> are claimed (those the native runner hands to a provider's
    /// batch API), otherwise those the dispatcher sends: of <see cref="ItemTier.Realtime"/> and
    /// <see cref="ItemTier.Flex"/>. <see cref="BatchStoreExtensions.ClaimAsync"/> and
    /// <see cref="BatchStoreExtensions.ClaimNativeAsync"/> say it in the words callers use.
    /// </summary>
    Task<IReadOnlyList<ClaimedItem>> ClaimAsync(string model, string? batchId, bool native, int max, DateTimeOffset now, DateTimeOffset leaseUntil, CancellationToken cancellationToken);

    /// <summary>The earliest time a queued item for <paramref name="model"/> that the dispatcher sends becomes due (of <paramref name="batchId"/> only, when given), or null.</summary>
    Task<DateTimeOffset?> NextDueAsync(string model, string? batchId, CancellationToken cancellationToken);

    /// <summary>
    /// Moves a batch's queued items of <paramref name="model"/> (all models, when null) from the
    /// tiers in <paramref name="fromTiers"/> to <paramref name="toTier"/>; returns how many moved.
    /// </summary>
    Task<int> MoveTierAsync(string batchId, string? model, IReadOnlyCollection<ItemTier> fromTiers, ItemTier toTier, CancellationToken cancellationToken);

    /// <summary>Moves the items <paramref name="itemIds"/> to <paramref name="toTier"/>, whatever their state (a leased one goes there when it is released).</summary>
    Task MoveItemsAsync(IReadOnlyCollection<long> itemIds, ItemTier toTier, CancellationToken cancellationToken);

    /// <summary>
    /// Gives the queued items of <paramref name="toBatchId"/> whose custom id and body are those of
    /// an item that succeeded in <paramref name="fromBatchId"/> (an earlier batch of the same input)
    /// that answer, at no cost, marked cached; they end succeeded. Returns how many were reused,
    /// and how many items of the earlier batch the new one no longer has.
    /// </summary>
    Task<CarriedOver> CarryOverAsync(string fromBatchId, string toBatchId, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Marks a planned batch cut over to realtime at <paramref name="now"/> (once: a later call changes nothing), and moves its queued native and flex items to realtime.</summary>
    Task CutOverAsync(string batchId, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>A batch's items not yet ended, by model and tier.</summary>
    Task<IReadOnlyList<OpenItems>> ListOpenItemsAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>
    /// Ends every item of a batch not yet sent as <paramref name="ending"/>
    /// (<see cref="ItemState.Cancelled"/> or <see cref="ItemState.Expired"/>), marks the batch so,
    /// and ends it when nothing is in flight. <see cref="BatchStoreExtensions.CancelBatchAsync"/>
    /// and <see cref="BatchStoreExtensions.ExpireBatchAsync"/> say it in the words callers use.
    /// </summary>
    Task EndUnsentAsync(string batchId, ItemState ending, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Queues the failed and expired items of a batch again, as if never sent (their results and
    /// attempts are cleared, and their tokens and cost taken off the batch's), keeping every
    /// success and its cost. A batch that had ended is in progress again, with its completion
    /// window ending at <paramref name="expiresAt"/> (none when null). Returns how many items
    /// were queued again.
    /// </summary>
    Task<long> RequeueFailedAsync(string batchId, DateTimeOffset? expiresAt, CancellationToken cancellationToken);

    /// <summary>Sets the budget of a batch (null for none), for the requests not yet sent.</summary>
    Task SetBudgetAsync(string batchId, long? budgetNanos, CancellationToken cancellationToken);

    /// <summary>Adds realtime calls and their cost to each tenant's ledger of their day, in one transaction.</summary>
    Task AddSpendAsync(IReadOnlyList<TenantSpend> spends, CancellationToken cancellationToken);

    /// <summary>Every tenant's realtime calls and their cost on <paramref name="day"/> (UTC).</summary>
    Task<IReadOnlyList<TenantSpend>> ListSpendAsync(DateOnly day, CancellationToken cancellationToken);

    /// <summary>Sets how a batch uses the answer cache, for the requests not yet sent.</summary>
    Task SetCacheUseAsync(string batchId, CacheUse use, CancellationToken cancellationToken);

    /// <summary>Sets what a batch asks of its answers from now on: its own schema (null for none) and how often one that does not fit is asked again (null for the default).</summary>
    Task SetOutputRulesAsync(string batchId, string? outputSchema, int? maxReasks, CancellationToken cancellationToken);

    /// <summary>
    /// Sets how a batch runs from now on: its mode, and its deadline (<see cref="BatchRecord.ExpiresAt"/>;
    /// none when null). Its queued items go to the tier the mode starts items in (leased ones stay
    /// where they are sent), and a cut-over is forgotten, so the planner looks again.
    /// </summary>
    Task SetPlanAsync(string batchId, BatchMode mode, DateTimeOffset? expiresAt, CancellationToken cancellationToken);

    /// <summary>
    /// Commits many lease outcomes in one transaction. An outcome whose lease is no longer held
    /// (the item was released and claimed again) changes nothing, so an answer is never
    /// recorded twice.
    /// </summary>
    Task<CommitSummary> CommitAsync(IReadOnlyList<ItemOutcome> outcomes, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Streams the items of the batch in input order with their results, page by page, leaving out the first <paramref name="skip"/>.</summary>
    IAsyncEnumerable<ItemResult> ReadResultsAsync(string batchId, long skip, CancellationToken cancellationToken);

    /// <summary>One item of the batch with its result, by custom id, or null.</summary>
    Task<ItemResult?> GetResultAsync(string batchId, string customId, CancellationToken cancellationToken);

    /// <summary>
    /// What the batch's recorded answers show: answers, tokens and failures per
    /// <paramref name="bucket"/> of time, failures by kind, and every answer's latency.
    /// </summary>
    Task<BatchActivity> GetActivityAsync(string batchId, TimeSpan bucket, CancellationToken cancellationToken);

    /// <summary>
    /// Streams the requests of the batch (line, custom id, model and the body sent upstream) whose
    /// items are in one of <paramref name="states"/>, in input order, page by page.
    /// </summary>
    IAsyncEnumerable<ImportItem> ReadRequestsAsync(string batchId, IReadOnlyCollection<ItemState> states, CancellationToken cancellationToken);

    /// <summary>
    /// Records a job created at a provider's batch API for <paramref name="itemIds"/> (leased
    /// items of a native batch), so a restart resumes polling it instead of creating another.
    /// Returns the job as recorded.
    /// </summary>
    Task<NativeJob> AddNativeJobAsync(string batchId, string upstream, string providerBatchId, IReadOnlyList<long> itemIds, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>The jobs whose results are still to be read, oldest first.</summary>
    Task<IReadOnlyList<NativeJob>> ListOpenNativeJobsAsync(CancellationToken cancellationToken);

    /// <summary>The jobs of one batch, oldest first.</summary>
    Task<IReadOnlyList<NativeJob>> ListNativeJobsAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>The ids of the items a job holds.</summary>
    Task<IReadOnlyList<long>> ListNativeJobItemsAsync(long jobId, CancellationToken cancellationToken);

    /// <summary>Marks a job: a cancel was sent to the provider, or its results were recorded.</summary>
    Task UpdateNativeJobAsync(long jobId, NativeJobStatus status, bool cancelRequested, CancellationToken cancellationToken);
}

/// <summary>What an edited input kept of its earlier batch.</summary>
/// <param name="Reused">Requests whose custom id and body were unchanged and had an answer: kept, not sent again.</param>
/// <param name="Dropped">Requests of the earlier batch the input no longer holds.</param>
public sealed record CarriedOver(long Reused, long Dropped);

/// <summary>How many items of a batch, of one model and tier, have not ended.</summary>
/// <param name="Model">The model.</param>
/// <param name="Tier">The tier they go by.</param>
/// <param name="Count">How many.</param>
public sealed record OpenItems(string Model, ItemTier Tier, long Count);

/// <summary>What an accepted input was.</summary>
/// <param name="Format">The dialect of its lines.</param>
/// <param name="Endpoint">The url every line names.</param>
/// <param name="Total">How many requests it holds.</param>
/// <param name="Sha256">The SHA-256 of the input bytes, hex, when known.</param>
/// <param name="Bytes">The input's length in bytes.</param>
public sealed record AcceptedInput(InputFormat Format, string Endpoint, long Total, string? Sha256, long Bytes);
