using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

public sealed partial class PostgresBatchStore
{
    /// <inheritdoc />
    public async Task<TenantUsage> GetUsageAsync(string? owner, CancellationToken cancellationToken) =>
        (await QueryAsync(StoreRows.UsageQuery, StoreRows.ReadUsage, cancellationToken, ("owner", owner))).Single();

    /// <inheritdoc />
    public async Task<BatchActivity> GetActivityAsync(string batchId, TimeSpan bucket, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        var width = Math.Max(1, (long)bucket.TotalMilliseconds);
        return new BatchActivity(
            await QueryAsync(StoreRows.TimelineQuery, r => StoreRows.ReadBucket(r, width), cancellationToken, ("batch", batchId), ("width", width)),
            await QueryAsync(StoreRows.ErrorsQuery, r => new ErrorCount(r.GetString(0), r.GetInt64(1)), cancellationToken, ("batch", batchId)),
            await QueryAsync(StoreRows.LatencyQuery, r => r.GetInt32(0), cancellationToken, ("batch", batchId)));
    }
}
