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
            var id = (long)(await ScalarAsync(connection, tx, """
                INSERT INTO native_jobs (batch_id, upstream, provider_batch_id, status, created_at) VALUES (@batch, @upstream, @provider, 0, @now)
                RETURNING id
                """, cancellationToken, ("batch", batchId), ("upstream", upstream), ("provider", providerBatchId), ("now", now.ToUnixTimeMilliseconds())))!;
            await ExecuteAsync(connection, tx, "INSERT INTO native_job_items (job_id, item_id) SELECT @job, unnest(@items::bigint[])", cancellationToken,
                ("job", id), ("items", itemIds.ToArray()));
            return StoreRows.NewNativeJob(id, batchId, upstream, providerBatchId, now);
        }, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<NativeJob>> ListOpenNativeJobsAsync(CancellationToken cancellationToken) =>
        await QueryAsync($"SELECT {StoreRows.NativeJobColumns} FROM native_jobs WHERE status = 0 ORDER BY id", StoreRows.ReadNativeJob, cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<NativeJob>> ListNativeJobsAsync(string batchId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        return await QueryAsync($"SELECT {StoreRows.NativeJobColumns} FROM native_jobs WHERE batch_id = @batch ORDER BY id", StoreRows.ReadNativeJob, cancellationToken, ("batch", batchId));
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<long>> ListNativeJobItemsAsync(long jobId, CancellationToken cancellationToken) =>
        await QueryAsync("SELECT item_id FROM native_job_items WHERE job_id = @job ORDER BY item_id", r => r.GetInt64(0), cancellationToken, ("job", jobId));

    /// <inheritdoc />
    public Task UpdateNativeJobAsync(long jobId, NativeJobStatus status, bool cancelRequested, CancellationToken cancellationToken) =>
        WithConnectionAsync(connection => ExecuteAsync(connection, null, "UPDATE native_jobs SET status = @status, cancel_requested = @cancel WHERE id = @id", cancellationToken,
            ("id", jobId), ("status", (int)status), ("cancel", cancelRequested ? 1 : 0)), cancellationToken);
}
