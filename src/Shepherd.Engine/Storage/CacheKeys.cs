using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;
using Shepherd.Engine.Pricing;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Storage;

/// <summary>
/// What the dispatcher and the native runner share about the answer cache: which claimed item is
/// looked up, under which key, and what an answer found there records.
/// </summary>
internal static class CacheKeys
{
    /// <summary>
    /// The key of <paramref name="item"/>, of a batch owned by <paramref name="owner"/> that uses the
    /// cache as <paramref name="use"/> says, sent to an upstream of <paramref name="kind"/>; null
    /// when it is neither looked up nor kept (the cache is off for its batch, or it asks for
    /// sampling in a batch that does not replay it). The body is the one sent: a flex item's with its tier.
    /// </summary>
    public static string? For(CacheUse use, string? owner, UpstreamKind kind, ClaimedItem item) =>
        Uses(use, item.Body) ? AnswerCache.KeyOf(kind, owner, item.Url, item.Tier == ItemTier.Flex ? FlexTier.Body(item.Body) : item.Body) : null;

    /// <summary>True when a batch that uses the cache as <paramref name="use"/> says looks up, and keeps the answer of, a request of <paramref name="body"/>.</summary>
    public static bool Uses(CacheUse use, ReadOnlySpan<byte> body) =>
        use == CacheUse.All || (use == CacheUse.Unsampled && !Sampling.IsAsked(body));

    /// <summary>
    /// The kept answers of the requests <paramref name="keys"/> names (each by its own id, such as
    /// an item's), by that id; none when the cache cannot be read: the requests are then sent.
    /// </summary>
    public static async Task<IReadOnlyDictionary<long, CachedAnswer>> FindAsync(AnswerCache cache, IReadOnlyDictionary<long, string> keys, CancellationToken cancellationToken)
    {
        if (keys.Count == 0)
        {
            return new Dictionary<long, CachedAnswer>();
        }

        try
        {
            var found = await cache.FindAsync([.. keys.Values.Distinct(StringComparer.Ordinal)], cancellationToken).ConfigureAwait(false);
            return keys.Where(pair => found.ContainsKey(pair.Value)).ToDictionary(pair => pair.Key, pair => found[pair.Value]);
        }
        catch (Exception ex) when (ex is System.Data.Common.DbException or StoreException)
        {
            return new Dictionary<long, CachedAnswer>();
        }
    }

    /// <summary>An answer from the cache as <paramref name="item"/>'s result: nothing paid, and what it would have cost at its tier's price counted as saved.</summary>
    public static AttemptResult Answer(CachedAnswer answer, ClaimedItem item, PriceTable prices)
    {
        var result = new AttemptResult
        {
            StatusCode = answer.StatusCode,
            Body = answer.Body,
            InputTokens = answer.InputTokens,
            OutputTokens = answer.OutputTokens,
            CachedTokens = answer.CachedTokens,
        };
        var priced = prices.PriceAnswer(item.Model, item.Tier, result);
        return result with { CostNanos = 0, SavedNanos = priced.CostNanos, Priced = priced.Priced, Cached = true };
    }

    /// <summary>A successful result as the cache keeps it; null for one without a status or a body.</summary>
    public static CachedAnswer? Kept(AttemptResult result) =>
        result is { StatusCode: { } status, Body: { } body }
            ? new CachedAnswer(status, body, result.InputTokens, result.OutputTokens, result.CachedTokens)
            : null;
}
