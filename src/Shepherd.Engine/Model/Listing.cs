namespace Shepherd.Engine.Model;

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

/// <summary>A tenant's realtime calls on one day (UTC) and what they cost.</summary>
/// <param name="Owner">The tenant; empty on a server without keys.</param>
/// <param name="Day">The day, in UTC.</param>
/// <param name="Calls">Attempts of realtime calls.</param>
/// <param name="CostNanos">What they cost, in billionths of a US dollar.</param>
public sealed record TenantSpend(string Owner, DateOnly Day, long Calls, long CostNanos)
{
    /// <summary>The day as the ledger keeps it.</summary>
    internal string DayText => Day.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);

    internal static TenantSpend Read(System.Data.Common.DbDataReader row) => new(
        row.GetString(0), DateOnly.ParseExact(row.GetString(1), "yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture), row.GetInt64(2), row.GetInt64(3));
}
