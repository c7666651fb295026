namespace Shepherd.Engine.Model;

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

    /// <summary>Which way the item goes: the dispatcher sends realtime and flex items, the native runner hands native ones to a provider's batch API.</summary>
    public ItemTier Tier { get; init; }

    /// <summary>How often an answer of the item did not fit what the request asked for and it was asked again.</summary>
    public int Reasks { get; init; }
}

/// <summary>One item to add to a batch that is being validated.</summary>
/// <param name="Line">The 1-based line in the input.</param>
/// <param name="CustomId">The caller's id, unique in the batch.</param>
/// <param name="Model">The model the body names.</param>
/// <param name="Body">The request body, exactly as written.</param>
public sealed record ImportItem(long Line, string CustomId, string Model, byte[] Body);

/// <summary>One item's final result, read back for export.</summary>
/// <param name="Line">The item's 1-based line in the input.</param>
/// <param name="CustomId">The caller's id.</param>
/// <param name="State">The item's state; results exist for succeeded and failed items.</param>
/// <param name="Result">The recorded result; null while the item has not ended.</param>
public sealed record ItemResult(long Line, string CustomId, ItemState State, AttemptResult? Result);

/// <summary>A line whose custom id an earlier line already used.</summary>
/// <param name="Line">The later line.</param>
/// <param name="CustomId">The repeated id.</param>
/// <param name="FirstLine">The line that used it first.</param>
public sealed record DuplicateCustomId(long Line, string CustomId, long FirstLine);
