using Shepherd.Engine.Model;

namespace Shepherd.Engine.Storage;

public sealed partial class PostgresBatchStore
{
    /// <inheritdoc />
    public Task<NativeJob> AddNativeJobAsync(string batchId, string upstream, string providerBatchId, IReadOnlyList<long> itemIds, DateTimeOffset now, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        ArgumentNullException.ThrowIfNull(upstream);
        ArgumentNullException.ThrowIfNull(providerBatchId);
        ArgumentNullException.ThrowIfNull(itemIds);
        return InTransactionAsync(async (connection, tx) =>
        {
            var id = (long)(await ScalarAsync(connection, tx, StoreSql.InsertNativeJob, cancellationToken, ("batch", batchId), ("upstream", upstream), ("provider", providerBatchId), ("now", now.ToUnixTimeMilliseconds())))!;
            await ExecuteAsync(connection, tx, "INSERT INTO native_job_items (job_id, item_id) SELECT @job, unnest(@items::bigint[])", cancellationToken,
                ("job", id), ("items", itemIds.ToArray()));
            return StoreRows.NewNativeJob(id, batchId, upstream, providerBatchId, now);
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<NativeJob>> ListOpenNativeJobsAsync(CancellationToken cancellationToken) =>
        await QueryAsync(StoreSql.OpenNativeJobs, StoreRows.ReadNativeJob, cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<NativeJob>> ListNativeJobsAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return await QueryAsync(StoreSql.NativeJobsOfBatch, StoreRows.ReadNativeJob, cancellationToken, ("batch", batchId));
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<long>> ListNativeJobItemsAsync(long jobId, CancellationToken cancellationToken) =>
        await QueryAsync(StoreSql.NativeJobItems, r => r.GetInt64(0), cancellationToken, ("job", jobId));

    /// <inheritdoc />
    public Task UpdateNativeJobAsync(long jobId, NativeJobStatus status, bool cancelRequested, CancellationToken cancellationToken) =>
        WithConnectionAsync(connection => ExecuteAsync(connection, null, StoreSql.UpdateNativeJob, cancellationToken,
            ("id", jobId), ("status", (int)status), ("cancel", cancelRequested ? 1 : 0)), cancellationToken);
}
