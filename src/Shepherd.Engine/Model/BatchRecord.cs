using Shepherd.Engine.Formats;
using Shepherd.Engine.Storage;

namespace Shepherd.Engine.Model;

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

    /// <summary>
    /// When the planner moved what was still open to realtime, so that it is answered by the
    /// deadline (<see cref="ExpiresAt"/>); null before, and for batches it does not plan.
    /// </summary>
    public DateTimeOffset? CutOverAt { get; init; }

    /// <summary>Of <see cref="Succeeded"/>, and of <see cref="CostNanos"/>, what each tier answered; realtime is the rest, less the <see cref="Cached"/> answers.</summary>
    public TierTally Tiers { get; init; } = TierTally.None;

    /// <summary>Of <see cref="Succeeded"/>, answers not sent for, and not paid for, again: kept from an earlier run of the same input.</summary>
    public long Cached { get; init; }

    /// <summary>What the <see cref="Cached"/> answers cost when they were bought: what keeping them saved.</summary>
    public long CacheSavedNanos { get; init; }

    /// <summary>How the batch uses the answer cache, where its node has one.</summary>
    public CacheUse Cache { get; init; } = CacheUse.All;

    /// <summary>The JSON Schema every answer of the batch must fit, as given for the whole batch; null for none (a request may still ask for one of its own).</summary>
    public string? OutputSchema { get; init; }

    /// <summary>How often an answer that does not fit is asked again; null for the default, <see cref="OutputRules.DefaultMaxReasks"/>.</summary>
    public int? MaxReasks { get; init; }

    /// <summary>How the answers checked against what their requests asked for came out.</summary>
    public OutputTally Output { get; init; } = OutputTally.None;

    /// <summary>Requests that have ended: succeeded, failed, cancelled or expired.</summary>
    public long Finished => Succeeded + Failed + Cancelled + Expired;

    /// <summary>True once the batch can change no more. A finalizing batch has not ended: its files are being written.</summary>
    public bool HasEnded => Status is BatchStatus.Completed or BatchStatus.Failed or BatchStatus.Cancelled or BatchStatus.Expired;

    /// <summary>
    /// When the batch ended, as its OpenAI status tells it: completed, cancelled, failed, or
    /// expired (its expiry counts only when it ended expired); null before.
    /// </summary>
    public DateTimeOffset? EndedAt => CompletedAt ?? CancelledAt ?? FailedAt ?? (Status == BatchStatus.Expired ? ExpiredAt : null);
}

/// <summary>What the native and flex tiers answered of a batch, and what the batch saved against the list price.</summary>
/// <param name="NativeSucceeded">Requests the provider's batch API answered.</param>
/// <param name="NativeCostNanos">What they cost, in billionths of a US dollar.</param>
/// <param name="FlexSucceeded">Requests the flex tier answered.</param>
/// <param name="FlexCostNanos">What they cost.</param>
/// <param name="SavedNanos">What every answer would have cost more at the list price.</param>
public sealed record TierTally(long NativeSucceeded, long NativeCostNanos, long FlexSucceeded, long FlexCostNanos, long SavedNanos)
{
    /// <summary>Nothing answered by a cheaper tier.</summary>
    public static TierTally None { get; } = new(0, 0, 0, 0, 0);

    /// <summary>Requests answered in realtime, of <paramref name="batch"/>'s succeeded ones.</summary>
    public long RealtimeSucceeded(BatchRecord batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return batch.Succeeded - NativeSucceeded - FlexSucceeded - batch.Cached;
    }

    /// <summary>What the realtime answers cost, of <paramref name="batch"/>'s cost.</summary>
    public long RealtimeCostNanos(BatchRecord batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return batch.CostNanos - NativeCostNanos - FlexCostNanos;
    }
}

/// <summary>How a batch's answers that were checked against what their requests asked for came out.</summary>
/// <param name="ValidFirst">Requests whose first answer fitted.</param>
/// <param name="ValidReasked">Requests whose answer fitted once they were asked again.</param>
/// <param name="Invalid">Requests that failed with <c>invalid_output</c>: no answer fitted, as often as they were asked.</param>
/// <param name="Reasked">Answers that did not fit and were asked again.</param>
/// <param name="ReaskCostNanos">What those answers cost, in billionths of a US dollar: answers paid for and thrown away.</param>
public sealed record OutputTally(long ValidFirst, long ValidReasked, long Invalid, long Reasked, long ReaskCostNanos)
{
    /// <summary>Nothing checked.</summary>
    public static OutputTally None { get; } = new(0, 0, 0, 0, 0);

    /// <summary>Requests whose answer was checked and that ended.</summary>
    public long Checked => ValidFirst + ValidReasked + Invalid;
}

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

    /// <summary>
    /// How the batch uses the answer cache, where its node has one.
    /// <value>The default is <see cref="CacheUse.All"/>.</value>
    /// </summary>
    public CacheUse Cache { get; init; } = CacheUse.All;

    /// <summary>The JSON Schema every answer must fit (a request's own schema wins); null for none.</summary>
    public string? OutputSchema { get; init; }

    /// <summary>How often an answer that does not fit is asked again; null for the default.</summary>
    public int? MaxReasks { get; init; }
}
