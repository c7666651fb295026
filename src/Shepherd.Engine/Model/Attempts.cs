namespace Shepherd.Engine.Model;

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

    /// <summary>True for an answer not sent for, and not paid for, again: kept from an earlier run of the same request (the same custom id and body).</summary>
    public bool Cached { get; init; }

    /// <summary>What the answer would have cost more at the list price (a native or flex answer's discount), in billionths of a US dollar.</summary>
    public long SavedNanos { get; init; }

    /// <summary>Milliseconds from sending the request to its answer; 0 when unknown.</summary>
    public int LatencyMs { get; init; }

    /// <summary>
    /// For a request that asked for structured output: true when the answer parsed and fitted what
    /// was asked, false when it did not; null for an answer that was not checked.
    /// </summary>
    public bool? Fits { get; init; }

    /// <summary>False when the answer's model has no price: <see cref="CostNanos"/> is 0 and the batch counts it as unpriced.</summary>
    public bool Priced { get; init; } = true;

    /// <summary>A short description for logs and the item's last error: status or code, never a body.</summary>
    public string Describe() => StatusCode is { } status
        ? ErrorCode is { } code ? $"HTTP {status}, {code}" : $"HTTP {status}"
        : $"{ErrorCode}: {ErrorMessage}";

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

/// <summary>What a commit changed beyond its items.</summary>
/// <param name="CompletedBatches">Batches whose last item ended in this commit.</param>
public sealed record CommitSummary(IReadOnlyList<string> CompletedBatches)
{
    /// <summary>A commit that completed no batch.</summary>
    public static CommitSummary None { get; } = new([]);
}
