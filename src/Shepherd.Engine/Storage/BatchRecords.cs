using Shepherd.Engine.Formats;

namespace Shepherd.Engine.Storage;

/// <summary>Where a batch is in its life. Derived from its items and written by the store.</summary>
public enum BatchStatus
{
    /// <summary>The input is being read and checked; no item is dispatched yet.</summary>
    Validating,

    /// <summary>Items are being dispatched.</summary>
    InProgress,

    /// <summary>Every item has ended; results are being assembled.</summary>
    Finalizing,

    /// <summary>Every item has ended.</summary>
    Completed,

    /// <summary>The input was rejected; no item ran.</summary>
    Failed,

    /// <summary>A cancel was asked for; items in flight are finishing.</summary>
    Cancelling,

    /// <summary>Cancelled; finished items keep their results.</summary>
    Cancelled,

    /// <summary>The completion window passed before every item ended.</summary>
    Expired,
}

/// <summary>Where an item is in its life: <c>queued → leased → succeeded | failed</c>.</summary>
public enum ItemState
{
    /// <summary>Waiting to be claimed, possibly not before <c>next_attempt_at</c>.</summary>
    Queued = 0,

    /// <summary>Claimed by a worker until its lease deadline.</summary>
    Leased = 1,

    /// <summary>Answered with a 2xx status.</summary>
    Succeeded = 2,

    /// <summary>Ended without success: a permanent error, or transient ones until attempts ran out.</summary>
    Failed = 3,

    /// <summary>The batch was cancelled before the item was sent.</summary>
    Cancelled = 4,

    /// <summary>The batch's completion window passed before the item was sent.</summary>
    Expired = 5,

    /// <summary>Imported into a batch that is still being validated; not yet dispatchable.</summary>
    Staged = 6,
}

/// <summary>Which door a batch came in by: it decides how it is listed, shown and finished.</summary>
public enum BatchDoor
{
    /// <summary><c>shepherd run</c>: results are written by the command itself.</summary>
    Run = 0,

    /// <summary>The OpenAI Batch API, from an uploaded file.</summary>
    OpenAI = 1,

    /// <summary>Shepherd's inline batches (requests in the create call).</summary>
    Inline = 2,

    /// <summary>The Anthropic Message Batches API.</summary>
    Anthropic = 3,
}

/// <summary>How soon a batch's items go, relative to other batches in the same lane.</summary>
public enum BatchPriority
{
    /// <summary>After every normal and high item of the lane.</summary>
    Low = 0,

    /// <summary>The default.</summary>
    Normal = 1,

    /// <summary>Before every normal and low item of the lane.</summary>
    High = 2,
}

/// <summary>How a batch's items are sent upstream.</summary>
public enum BatchMode
{
    /// <summary>The dispatcher sends each request as it goes, within the lanes' limits.</summary>
    Realtime = 0,

    /// <summary>The batch is handed to the upstream provider's own batch API (at its batch discount), polled, and its results mapped back.</summary>
    Native = 1,
}

/// <summary>A batch as the store holds it.</summary>
public sealed record BatchRecord
{
    /// <summary>The batch id, such as <c>batch_5f3c…</c>.</summary>
    public required string Id { get; init; }

    /// <summary>The dialect of the input and of the results.</summary>
    public required InputFormat Format { get; init; }

    /// <summary>The url every line names; null while validating an input whose first line is not read yet.</summary>
    public string? Endpoint { get; init; }

    /// <summary>How soon the batch's items go relative to other batches of the same lane.</summary>
    public BatchPriority Priority { get; init; } = BatchPriority.Normal;

    /// <summary>When unfinished items expire; null for never.</summary>
    public DateTimeOffset? ExpiresAt { get; init; }

    /// <summary>The batch's status.</summary>
    public required BatchStatus Status { get; init; }

    /// <summary>Where the input came from (a file path for <c>shepherd run</c>).</summary>
    public string? Source { get; init; }

    /// <summary>The SHA-256 of the input, hex, once it is fully read.</summary>
    public string? SourceSha256 { get; init; }

    /// <summary>The length of the input in bytes, once it is fully read.</summary>
    public long? SourceBytes { get; init; }

    /// <summary>When the batch was created.</summary>
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>When the input was accepted and dispatch began.</summary>
    public DateTimeOffset? InProgressAt { get; init; }

    /// <summary>When the last item ended.</summary>
    public DateTimeOffset? CompletedAt { get; init; }

    /// <summary>When the input was rejected.</summary>
    public DateTimeOffset? FailedAt { get; init; }

    /// <summary>When a cancel was asked for.</summary>
    public DateTimeOffset? CancellingAt { get; init; }

    /// <summary>When the cancel took effect (the last item in flight ended).</summary>
    public DateTimeOffset? CancelledAt { get; init; }

    /// <summary>When the completion window passed with items unfinished.</summary>
    public DateTimeOffset? ExpiredAt { get; init; }

    /// <summary>How many requests the batch holds.</summary>
    public long Total { get; init; }

    /// <summary>How many requests succeeded.</summary>
    public long Succeeded { get; init; }

    /// <summary>How many requests ended in failure.</summary>
    public long Failed { get; init; }

    /// <summary>How many requests were cancelled before they were sent.</summary>
    public long Cancelled { get; init; }

    /// <summary>How many requests expired before they were sent.</summary>
    public long Expired { get; init; }

    /// <summary>Input (prompt) tokens over all answers, as the upstream counted them.</summary>
    public long InputTokens { get; init; }

    /// <summary>Output (completion) tokens over all answers, as the upstream counted them.</summary>
    public long OutputTokens { get; init; }

    /// <summary>Why the input was rejected, when <see cref="Status"/> is <see cref="BatchStatus.Failed"/>.</summary>
    public IReadOnlyList<InputError> Errors { get; init; } = [];

    /// <summary>The tenant that owns the batch; null for batches of <c>shepherd run</c>.</summary>
    public string? Owner { get; init; }

    /// <summary>The door the batch came in by.</summary>
    public BatchDoor Door { get; init; }

    /// <summary>The uploaded file the batch was read from (OpenAI door).</summary>
    public string? InputFileId { get; init; }

    /// <summary>The completion window as the caller wrote it, such as <c>24h</c>.</summary>
    public string? CompletionWindow { get; init; }

    /// <summary>The caller's key-value pairs.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    /// <summary>The model an inline batch named for its prompts.</summary>
    public string? Model { get; init; }

    /// <summary>The file of successful result lines, once finalized.</summary>
    public string? OutputFileId { get; init; }

    /// <summary>The file of failed result lines, once finalized.</summary>
    public string? ErrorFileId { get; init; }

    /// <summary>When the last item ended and result files began to be written.</summary>
    public DateTimeOffset? FinalizingAt { get; init; }

    /// <summary>The key a create was made idempotent with.</summary>
    public string? IdempotencyKey { get; init; }

    /// <summary>What the answers so far cost, in billionths of a US dollar; each answer is priced once, when it is recorded.</summary>
    public long CostNanos { get; init; }

    /// <summary>Answers of models the price table does not know: they cost 0 here, and this says how many.</summary>
    public long Unpriced { get; init; }

    /// <summary>The most the batch may cost, in billionths of a US dollar; null for no limit.</summary>
    public long? BudgetNanos { get; init; }

    /// <summary>Requests that ended unsent because sending them could have gone over the budget.</summary>
    public long BudgetExceeded { get; init; }

    /// <summary>How the batch's items are sent: by the dispatcher, or by the provider's own batch API.</summary>
    public BatchMode Mode { get; init; }

    /// <summary>Requests that have ended: succeeded, failed, cancelled or expired.</summary>
    public long Finished => Succeeded + Failed + Cancelled + Expired;

    /// <summary>True once the batch can change no more. A finalizing batch has not ended: its files are being written.</summary>
    public bool HasEnded => Status is BatchStatus.Completed or BatchStatus.Failed or BatchStatus.Cancelled or BatchStatus.Expired;
}

/// <summary>An item handed to a worker: its lease is held until <see cref="ItemOutcome"/> is committed.</summary>
/// <param name="ItemId">The store's id of the item.</param>
/// <param name="BatchId">The batch the item belongs to.</param>
/// <param name="Line">The item's 1-based line in the input.</param>
/// <param name="CustomId">The caller's id for the item.</param>
/// <param name="Model">The model the body names.</param>
/// <param name="Body">The request body, exactly as the input held it.</param>
/// <param name="Attempt">Which attempt this is, from 1.</param>
/// <param name="Priority">The batch's priority.</param>
/// <param name="Url">The url the batch's lines name.</param>
public sealed record ClaimedItem(long ItemId, string BatchId, long Line, string CustomId, string Model, byte[] Body, int Attempt, BatchPriority Priority, string Url)
{
    /// <summary>
    /// This lease's own number: every claim of the item takes the next one, so an outcome of an
    /// earlier lease is told apart from the holder's even when that lease gave its attempt back.
    /// </summary>
    public long Lease { get; init; }
}

/// <summary>What one attempt at an item produced, as it is recorded.</summary>
public sealed record AttemptResult
{
    /// <summary>The upstream's HTTP status; null when no HTTP answer arrived.</summary>
    public int? StatusCode { get; init; }

    /// <summary>The upstream's request id header.</summary>
    public string? RequestId { get; init; }

    /// <summary>The upstream's answer body (a JSON document); null when none arrived.</summary>
    public byte[]? Body { get; init; }

    /// <summary>Shepherd's code for a failure without an HTTP answer, such as <c>request_timeout</c>.</summary>
    public string? ErrorCode { get; init; }

    /// <summary>The words for <see cref="ErrorCode"/>.</summary>
    public string? ErrorMessage { get; init; }

    /// <summary>Input tokens the upstream reported.</summary>
    public int InputTokens { get; init; }

    /// <summary>Output tokens the upstream reported.</summary>
    public int OutputTokens { get; init; }

    /// <summary>Of the input tokens, those the provider read from its cache (priced lower by some).</summary>
    public int CachedTokens { get; init; }

    /// <summary>What the answer cost, in billionths of a US dollar.</summary>
    public long CostNanos { get; init; }

    /// <summary>Milliseconds from sending the request to its answer; 0 when unknown.</summary>
    public int LatencyMs { get; init; }

    /// <summary>False when the answer's model has no price: <see cref="CostNanos"/> is 0 and the batch counts it as unpriced.</summary>
    public bool Priced { get; init; } = true;

    /// <summary>A short description for logs and the item's last error: status or code, never a body.</summary>
    public string Describe() => StatusCode is { } status ? $"HTTP {status}" : $"{ErrorCode}: {ErrorMessage}";

    /// <summary>The same as <see cref="Describe"/>: a result printed anywhere shows no body.</summary>
    public override string ToString() => Describe();
}

/// <summary>How an attempt ends for the item.</summary>
public enum OutcomeKind
{
    /// <summary>The item succeeded; the result is final.</summary>
    Succeeded,

    /// <summary>The item failed for good; the result is final.</summary>
    Failed,

    /// <summary>The attempt failed for a transient reason; the item is queued again.</summary>
    Retry,

    /// <summary>The item was never sent (the dispatcher stopped first); it is queued again and the attempt not counted.</summary>
    Released,

    /// <summary>The item was never sent and its batch was cancelled; it ends cancelled.</summary>
    Cancelled,

    /// <summary>The item was never sent and its batch's window passed; it ends expired.</summary>
    Expired,
}

/// <summary>The end of one lease, to be committed to the store.</summary>
/// <param name="Item">The leased item.</param>
/// <param name="Kind">How the attempt ends for the item.</param>
/// <param name="Result">What the attempt produced.</param>
/// <param name="NextAttemptAt">For <see cref="OutcomeKind.Retry"/>, the earliest time of the next attempt.</param>
public sealed record ItemOutcome(ClaimedItem Item, OutcomeKind Kind, AttemptResult Result, DateTimeOffset NextAttemptAt = default);

/// <summary>One item's final result, read back for export.</summary>
/// <param name="Line">The item's 1-based line in the input.</param>
/// <param name="CustomId">The caller's id.</param>
/// <param name="State">The item's state; results exist for succeeded and failed items.</param>
/// <param name="Result">The recorded result; null while the item has not ended.</param>
public sealed record ItemResult(long Line, string CustomId, ItemState State, AttemptResult? Result);

/// <summary>One item to add to a batch that is being validated.</summary>
/// <param name="Line">The 1-based line in the input.</param>
/// <param name="CustomId">The caller's id, unique in the batch.</param>
/// <param name="Model">The model the body names.</param>
/// <param name="Body">The request body, exactly as written.</param>
public sealed record ImportItem(long Line, string CustomId, string Model, byte[] Body);

/// <summary>A batch to create in <see cref="BatchStatus.Validating"/>.</summary>
/// <param name="Id">The new batch's id.</param>
/// <param name="Source">Where the input comes from.</param>
/// <param name="Endpoint">The url every line must name, when the caller fixed it before the input is read.</param>
/// <param name="Priority">How soon its items go relative to other batches of the same lane.</param>
/// <param name="CompletionWindow">How long after creation unfinished items expire; null for never.</param>
public sealed record NewBatch(string Id, string? Source, string? Endpoint = null, BatchPriority Priority = BatchPriority.Normal, TimeSpan? CompletionWindow = null)
{
    /// <summary>The tenant that owns the batch.</summary>
    public string? Owner { get; init; }

    /// <summary>The door the batch comes in by; batches of the API doors get result files when they end.</summary>
    public BatchDoor Door { get; init; }

    /// <summary>The uploaded file the batch is read from.</summary>
    public string? InputFileId { get; init; }

    /// <summary>The completion window as the caller wrote it.</summary>
    public string? CompletionWindowText { get; init; }

    /// <summary>The caller's key-value pairs.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>The model an inline batch names.</summary>
    public string? Model { get; init; }

    /// <summary>Makes the create idempotent for the owner: a second create with the key returns the first batch.</summary>
    public string? IdempotencyKey { get; init; }

    /// <summary>
    /// The SHA-256 (hex) of the create's body, kept with <see cref="IdempotencyKey"/>: a second
    /// create with the key and another body is refused (<see cref="IdempotencyKeyReusedException"/>).
    /// Null compares with nothing.
    /// </summary>
    public string? BodySha256 { get; init; }

    /// <summary>The most the batch may cost, in billionths of a US dollar; null for no limit.</summary>
    public long? BudgetNanos { get; init; }

    /// <summary>How the batch's items are sent: by the dispatcher, or by the provider's own batch API.</summary>
    public BatchMode Mode { get; init; }
}

/// <summary>A stored file: an upload, or results a batch produced.</summary>
public sealed record FileRecord
{
    /// <summary>The file id, such as <c>file-5f3c…</c>.</summary>
    public required string Id { get; init; }

    /// <summary>The tenant that owns the file.</summary>
    public string? Owner { get; init; }

    /// <summary>The name it was uploaded with, or given.</summary>
    public required string Filename { get; init; }

    /// <summary><c>batch</c> for inputs, <c>batch_output</c> for results.</summary>
    public required string Purpose { get; init; }

    /// <summary>Its length in bytes.</summary>
    public long Bytes { get; init; }

    /// <summary>When it was stored.</summary>
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>The batch that produced it, for result files.</summary>
    public string? BatchId { get; init; }
}

/// <summary>A file to store.</summary>
/// <param name="Id">The new file's id.</param>
/// <param name="Owner">The tenant that owns it.</param>
/// <param name="Filename">Its name.</param>
/// <param name="Purpose">Its purpose.</param>
/// <param name="BatchId">The batch that produced it, for result files.</param>
public sealed record NewFile(string Id, string? Owner, string Filename, string Purpose, string? BatchId = null);

/// <summary>A page of a listing: which way and from where.</summary>
/// <param name="Limit">The most items.</param>
/// <param name="After">Items beyond this id in the listing's order: older ones newest first, newer ones oldest first.</param>
/// <param name="Before">Items newer than this id (the previous page of a newest-first listing).</param>
/// <param name="OldestFirst">True for a listing oldest first; it pages with <paramref name="After"/> only.</param>
public sealed record PageRequest(int Limit, string? After = null, string? Before = null, bool OldestFirst = false);

/// <summary>A page of items, newest first, and whether there are more beyond it.</summary>
/// <typeparam name="T">The item type.</typeparam>
/// <param name="Items">The items.</param>
/// <param name="HasMore">True when more items lie beyond the page in the direction asked.</param>
public sealed record Page<T>(IReadOnlyList<T> Items, bool HasMore);

/// <summary>The file is larger than allowed; nothing of it was kept.</summary>
public sealed class FileTooLargeException : Exception
{
    /// <summary>Creates an exception with no message.</summary>
    public FileTooLargeException()
    {
    }

    /// <summary>Creates an exception with a message.</summary>
    public FileTooLargeException(string message)
        : base(message)
    {
    }

    /// <summary>Creates an exception with a message and its cause.</summary>
    public FileTooLargeException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>A line whose custom id an earlier line already used.</summary>
/// <param name="Line">The later line.</param>
/// <param name="CustomId">The repeated id.</param>
/// <param name="FirstLine">The line that used it first.</param>
public sealed record DuplicateCustomId(long Line, string CustomId, long FirstLine);

/// <summary>What a commit changed beyond its items.</summary>
/// <param name="CompletedBatches">Batches whose last item ended in this commit.</param>
public sealed record CommitSummary(IReadOnlyList<string> CompletedBatches)
{
    /// <summary>A commit that completed no batch.</summary>
    public static CommitSummary None { get; } = new([]);
}

/// <summary>Where a job handed to a provider's batch API is.</summary>
public enum NativeJobStatus
{
    /// <summary>Created at the provider; its results are still to be read.</summary>
    Submitted = 0,

    /// <summary>Its results were read and recorded.</summary>
    Ended = 1,
}

/// <summary>A job handed to a provider's own batch API for some of a native batch's items.</summary>
public sealed record NativeJob
{
    /// <summary>The store's id of the job.</summary>
    public required long Id { get; init; }

    /// <summary>The Shepherd batch the job's items belong to.</summary>
    public required string BatchId { get; init; }

    /// <summary>The name of the upstream the job was handed to.</summary>
    public required string Upstream { get; init; }

    /// <summary>The provider's id of its batch.</summary>
    public required string ProviderBatchId { get; init; }

    /// <summary>Where the job is.</summary>
    public NativeJobStatus Status { get; init; }

    /// <summary>True once a cancel was sent to the provider.</summary>
    public bool CancelRequested { get; init; }

    /// <summary>When the job was created at the provider.</summary>
    public required DateTimeOffset CreatedAt { get; init; }
}

/// <summary>What a batch's answers show over time: for a dashboard.</summary>
/// <param name="Timeline">Answers recorded per time bucket, oldest first.</param>
/// <param name="Errors">Failed items by kind (<c>HTTP 400</c>, or Shepherd's code), most first.</param>
/// <param name="LatenciesMs">The latency of every answer that came over HTTP, in milliseconds, ascending.</param>
public sealed record BatchActivity(IReadOnlyList<ActivityBucket> Timeline, IReadOnlyList<ErrorCount> Errors, IReadOnlyList<int> LatenciesMs);

/// <summary>Answers recorded in one time bucket.</summary>
/// <param name="Start">The bucket's start.</param>
/// <param name="Requests">Answers recorded in it.</param>
/// <param name="Tokens">Their input and output tokens.</param>
/// <param name="Failed">How many of them ended the item failed.</param>
public sealed record ActivityBucket(DateTimeOffset Start, long Requests, long Tokens, long Failed);

/// <summary>How many items failed one way.</summary>
/// <param name="Kind">The way: <c>HTTP 400</c>, or Shepherd's code such as <c>request_timeout</c>.</param>
/// <param name="Count">How many.</param>
public sealed record ErrorCount(string Kind, long Count);

/// <summary>Whose files and batches a listing holds: one owner's, or everyone's.</summary>
/// <param name="Owner">The owner (null for the tenant of a server without keys).</param>
/// <param name="Everyone">True to list every owner's (an admin's view).</param>
public readonly record struct OwnerScope(string? Owner, bool Everyone = false)
{
    /// <summary>One owner's.</summary>
    public static OwnerScope Of(string? owner) => new(owner);

    /// <summary>One owner's.</summary>
    public static implicit operator OwnerScope(string? owner) => Of(owner);
}

/// <summary>What a tenant has open now.</summary>
/// <param name="OpenBatches">Its batches not yet ended (validating, in progress, finalizing, cancelling).</param>
/// <param name="QueuedItems">Their requests not yet ended.</param>
public sealed record TenantUsage(long OpenBatches, long QueuedItems);
