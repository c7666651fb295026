using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

public sealed partial class SqliteBatchStore
{
    /// <inheritdoc />
    public async Task<TenantUsage> GetUsageAsync(string? owner, CancellationToken cancellationToken) =>
        (await QueryAsync(StoreSql.Usage, StoreRows.ReadUsage, ("@owner", owner))).Single();

    /// <inheritdoc />
    public Task AddSpendAsync(IReadOnlyList<TenantSpend> spends, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(spends);
        return WriteAsync(writer =>
        {
            using var tx = writer.BeginTransaction();
            foreach (var spend in spends)
            {
                Execute(writer, StoreSql.AddSpend, tx, ("@owner", spend.Owner), ("@day", spend.DayText), ("@calls", spend.Calls), ("@cost", spend.CostNanos));
            }

            tx.Commit();
            return 0;
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<TenantSpend>> ListSpendAsync(DateOnly day, CancellationToken cancellationToken) =>
        await QueryAsync(StoreSql.SpendOn, TenantSpend.Read, ("@day", new TenantSpend("", day, 0, 0).DayText));

    /// <inheritdoc />
    public async Task<BatchActivity> GetActivityAsync(string batchId, TimeSpan bucket, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        var width = Math.Max(1, (long)bucket.TotalMilliseconds);
        return new BatchActivity(
            await QueryAsync(StoreSql.Timeline, r => StoreRows.ReadBucket(r, width), ("@batch", batchId), ("@width", width)),
            await QueryAsync(StoreSql.Errors, r => new ErrorCount(r.GetString(0), r.GetInt64(1)), ("@batch", batchId)),
            await QueryAsync(StoreSql.Latency, r => r.GetInt32(0), ("@batch", batchId)));
    }
}
